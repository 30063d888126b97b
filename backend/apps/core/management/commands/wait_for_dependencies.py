"""Wait for PostgreSQL and (when configured) Redis with exponential backoff."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

BACKOFF_CAP_SECONDS = 5.0


def backoff_delays(timeout: float, cap: float = BACKOFF_CAP_SECONDS):
    """Yield 1, 2, 4, 5, 5, ... seconds (capped) until the timeout is spent."""
    delay, spent = 1.0, 0.0
    while spent < timeout:
        step = min(delay, cap, timeout - spent)
        yield step
        spent += step
        delay *= 2


def _database_ok() -> None:
    connection = connections["default"]
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def _redis_ok() -> None:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
    )
    try:
        client.ping()
    finally:
        client.close()


class Command(BaseCommand):
    help = "Wait until PostgreSQL and Redis answer, with backoff (entrypoint step 2)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--timeout", type=float, default=settings.DEPENDENCY_WAIT_TIMEOUT
        )

    def handle(self, *args: Any, timeout: float, **options: Any) -> None:
        checks = {"PostgreSQL": _database_ok}
        if settings.REDIS_URL:
            checks["Redis"] = _redis_ok
        started = time.monotonic()
        delays = backoff_delays(timeout)
        attempt = 0
        while True:
            attempt += 1
            failures = {}
            for name, check in checks.items():
                try:
                    check()
                except Exception as exc:  # noqa: BLE001 - report any failure
                    failures[name] = f"{type(exc).__name__}: {exc}".strip().replace(
                        "\n", " "
                    )
            if not failures:
                self.stderr.write(
                    f"dependencies ready: {', '.join(checks)} "
                    f"(after {time.monotonic() - started:.1f}s, attempt {attempt})"
                )
                return
            reasons = "; ".join(f"{k} unreachable ({v})" for k, v in failures.items())
            delay = next(delays, None)
            if delay is None:
                raise CommandError(
                    f"dependency wait timed out after {timeout:g}s "
                    f"(DEPENDENCY_WAIT_TIMEOUT): {reasons}"
                )
            self.stderr.write(f"attempt {attempt}: {reasons}; retrying in {delay:g}s")
            time.sleep(delay)
