"""Logging to stdout: one JSON object per line (production) or readable console lines.

Every record gets the current request id, so Django, DRF, gunicorn and Celery lines of
one request can be joined. This module imports nothing from Django: gunicorn's config
and the Celery app use it before Django is set up.
"""

from __future__ import annotations

import json
import logging
import logging.config
import threading
import time
from datetime import UTC, datetime
from typing import Any

from runtime.context import request_id_get, task_id_var

# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
) | {"message", "asctime", "request_id", "taskName"}


class RequestIdFilter(logging.Filter):
    """Attach the request id of the current context to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            # django.request logs a 4xx/5xx after the middleware returned and the
            # context was reset; that record carries the request itself.
            record.request_id = request_id_get() or getattr(
                getattr(record, "request", None), "request_id", None
            )
        task_id = task_id_var.get()
        if task_id and not getattr(record, "task_id", None):
            record.task_id = task_id
        return True


class RateLimitFilter(logging.Filter):
    """Let the same message through once per interval (a Redis outage, not a flood)."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget what was logged (a new outage window starts now)."""
        with self._lock:
            self._last.clear()
            self._suppressed.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            record.suppressed_since_last = self._suppressed.pop(key, 0)
        return True


# Replaceable in tests, which step time instead of sleeping.
_monotonic = time.monotonic
# A refused Host is logged at most this often per process (seconds).
FOREIGN_HOST_LOG_INTERVAL = 60.0


class ForeignHostFilter(logging.Filter):
    """Let one refused-Host record through per interval, as a WARNING without its
    traceback.

    Anyone can send any Host header. Django logs each refusal as an ERROR with a
    traceback, which Sentry turns into an event: a flood of both, at no cost to the
    sender. As a filter of the logger it runs before any handler, Sentry's
    included, sees the record; a WARNING is below Sentry's event level. Every
    host counts together: a sender rotating names is still one line a minute.
    """

    def __init__(self, interval: float = FOREIGN_HOST_LOG_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._next_at = float("-inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._next_at = float("-inf")
            self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = _monotonic()
        with self._lock:
            if now < self._next_at:
                self._suppressed += 1
                return False
            self._next_at = now + self.interval
            suppressed, self._suppressed = self._suppressed, 0
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = record.stack_info = None
        record.suppressed_since_last = suppressed
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-8s %(name)s [%(request_id)s] %(message)s"
        )


def logging_config(
    *, log_format: str, level: str, cache_error_interval: float = 60
) -> dict:
    """Return the dictConfig shared by web, worker and beat."""
    formatter = "json" if log_format == "json" else "console"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "once_per_interval": {
                "()": RateLimitFilter,
                "interval": cache_error_interval,
            },
            "foreign_host": {"()": ForeignHostFilter},
        },
        "formatters": {
            "json": {"()": JsonFormatter},
            "console": {"()": ConsoleFormatter},
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": formatter,
                "filters": ["request_id"],
            },
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # Everything propagates to the root's single stdout handler.
            "django": {"level": level, "handlers": [], "propagate": True},
            "django.server": {"level": level, "handlers": [], "propagate": True},
            # Django logs every 4xx as a WARNING: a sold-out 409 or a wrong token's
            # 401 is ordinary traffic, already one access-log line each, and the
            # second line doubled the logging cost of refused reservations. 5xx
            # stay, with their traceback.
            "django.request": {"level": "ERROR", "handlers": [], "propagate": True},
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": level, "handlers": [], "propagate": True},
            "celery": {"level": level, "handlers": [], "propagate": True},
            "django.security.DisallowedHost": {
                "level": "WARNING",
                "handlers": [],
                "filters": ["foreign_host"],
                "propagate": True,
            },
            "apps.core.redis.cache": {
                "level": "WARNING",
                "handlers": [],
                "filters": ["once_per_interval"],
                "propagate": True,
            },
        },
    }


def configure_logging(
    *, log_format: str, level: str, cache_error_interval: float = 60
) -> None:
    """Configure logging for this process."""
    logging.config.dictConfig(
        logging_config(
            log_format=log_format,
            level=level,
            cache_error_interval=cache_error_interval,
        )
    )
