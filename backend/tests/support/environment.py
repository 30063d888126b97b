"""pytest plugin loaded first (-p): the test environment and the services check.

Tests run against the production settings module with a production-like
environment (DEBUG off), real PostgreSQL and real Redis.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/backend"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"

TEST_ENV = {
    "DEBUG": "false",
    "DJANGO_SECRET_KEY": "test-" + "k3y" * 20,
    "ALLOWED_HOSTS": "localhost,127.0.0.1,testserver",
    "CORS_ALLOWED_ORIGINS": "https://app.example.com",
    "DATABASE_URL": DEFAULT_DATABASE_URL,
    "REDIS_URL": DEFAULT_REDIS_URL,
    # The test client speaks plain HTTP; the redirect is tested through gunicorn.
    "SECURE_SSL_REDIRECT": "false",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "API_THROTTLE_USER": "1000000/minute",
    "API_THROTTLE_ANON": "1000000/minute",
}
for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)
# Tests must never see the operator's metrics token or Sentry DSN.
for _name in ("METRICS_TOKEN", "SENTRY_DSN", "CELERY_BROKER_URL"):
    os.environ.pop(_name, None)


def database_port() -> int:
    """Return the port of the test PostgreSQL (private servers use free ports)."""
    return urlsplit(os.environ["DATABASE_URL"]).port or 5432


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=3
        ):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    problems = []
    if not _reachable(os.environ["DATABASE_URL"], 5432):
        problems.append(
            f"PostgreSQL is unreachable at DATABASE_URL={os.environ['DATABASE_URL']}. "
            "Start it, or leave DATABASE_URL unset and run `make test`, which starts "
            "a private server for the run."
        )
    if not _reachable(os.environ["REDIS_URL"], 6379):
        problems.append(
            f"Redis is unreachable at REDIS_URL={os.environ['REDIS_URL']}. Start it, "
            "or leave REDIS_URL unset and run `make test`, which starts a private "
            "server for the run."
        )
    if problems:
        pytest.exit("\n".join(problems), returncode=3)
