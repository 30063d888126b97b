"""Environments for child processes: production-like, without the runner's own."""

from __future__ import annotations

import os

from tests.support.processes import BIN_DIR

# A complete, valid production environment (what an operator deploys).
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "prod-" + "s3cr3t" * 10,
    "ALLOWED_HOSTS": "api.example.com,localhost,127.0.0.1",
    "CORS_ALLOWED_ORIGINS": "https://app.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://app.example.com",
}


def clean_environ(**overrides: str) -> dict[str, str]:
    """Return os.environ without any registry variable, plus overrides."""
    from config.env import REGISTRY

    env = {k: v for k, v in os.environ.items() if k not in REGISTRY}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(overrides)
    return env


def with_venv_path(env: dict[str, str]) -> dict[str, str]:
    """Put the virtual environment's bin first, as the image's PATH does."""
    return {**env, "PATH": f"{BIN_DIR}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def database_url_of_test_database() -> str:
    """The URL of the database pytest-django made (for child processes)."""
    from django.db import connections

    # pytest-django renamed the database to the test one in the connection settings.
    db = connections["default"].settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def production_environ() -> dict[str, str]:
    """A valid production environment pointing at the test database and Redis."""
    return clean_environ(
        **PRODUCTION_ENV,
        DATABASE_URL=database_url_of_test_database(),
        REDIS_URL=os.environ["REDIS_URL"],
        # Tests that want the worker's metrics port pick a free one.
        WORKER_METRICS_PORT="0",
    )
