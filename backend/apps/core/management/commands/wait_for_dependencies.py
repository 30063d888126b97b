"""Wait for PostgreSQL and (when configured) Redis with exponential backoff."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

BACKOFF_CAP_SECONDS = 5.0


def backoff_delays(cap: float = BACKOFF_CAP_SECONDS):
    """Yield 1, 2, 4, 5, 5, ... seconds (capped); the caller keeps the deadline."""
    delay = 1.0
    while True:
        yield min(delay, cap)
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
    from apps.core.redis.sentinel import redis_client

    client = redis_client(
        settings.REDIS_URL,
        target=settings.REDIS_SENTINEL,
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
        parser.add_argument(
            "--redis",
            choices=("required", "optional"),
            default="required",
            help="optional: go on without Redis once PostgreSQL answers (web serves "
            "degraded without it; worker and beat cannot run without their broker).",
        )

    def handle(self, *args: Any, timeout: float, redis: str, **options: Any) -> None:
        checks = {"PostgreSQL": _database_ok}
        if settings.REDIS_URL:
            checks["Redis"] = _redis_ok
        required = set(checks) - ({"Redis"} if redis == "optional" else set())
        # Wall-clock: a black-holed host spends its connect timeout on every attempt,
        # which a budget counting only the sleeps would not see.
        started = time.monotonic()
        deadline = started + timeout
        delays = backoff_delays()
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
            elapsed = time.monotonic() - started
            if not failures.keys() & required:
                ready = [name for name in checks if name not in failures]
                self.stderr.write(
                    f"dependencies ready: {', '.join(ready)} "
                    f"(after {elapsed:.1f}s, attempt {attempt})"
                )
                for name, reason in failures.items():
                    self.stderr.write(
                        f"{name} unreachable ({reason}); starting without it: "
                        "the app serves degraded until it is back"
                    )
                return
            reasons = "; ".join(f"{k} unreachable ({v})" for k, v in failures.items())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandError(
                    f"dependency wait timed out after {timeout:g}s "
                    f"(DEPENDENCY_WAIT_TIMEOUT): {reasons}; gave up after "
                    f"{elapsed:.1f}s, attempt {attempt}"
                )
            delay = min(next(delays), remaining)
            self.stderr.write(
                f"attempt {attempt}: {reasons}; retrying in {_seconds(delay)}"
            )
            time.sleep(delay)


def _seconds(value: float) -> str:
    """Say 1s, 2s for whole seconds and 0.8s otherwise."""
    return f"{value:g}s" if value == int(value) else f"{value:.1f}s"
