"""Environments for child processes: production-like, without the runner's own."""

from __future__ import annotations

import os

from tests.support.processes import BIN_DIR

# A complete, valid production environment (what an operator deploys), but for its
# database and Redis, which each test points at the servers it means. Web, worker
# and beat (APP_ROLE's default is web) refuse to start without a broker.
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "prod-" + "s3cr3t" * 10,
    "ALLOWED_HOSTS": "api.example.com,localhost,127.0.0.1",
    "CORS_ALLOWED_ORIGINS": "https://app.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://app.example.com",
}
# For a process that only loads the settings: nothing connects to it.
UNREACHED_REDIS_URL = "redis://redis.invalid:6379/0"


def clean_environ(**overrides: str) -> dict[str, str]:
    """Return os.environ without any registry variable, plus overrides."""
    from runtime.env import REGISTRY

    # A secret's *_FILE form is configuration too (runtime/env/).
    names = {*REGISTRY, *(var.file_name for var in REGISTRY.values())}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(overrides)
    return env


def with_venv_path(env: dict[str, str]) -> dict[str, str]:
    """Put the virtual environment's bin first, as the image's PATH does."""
    return {**env, "PATH": f"{BIN_DIR}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def _url(settings_dict: dict, name: str) -> str:
    return (
        f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{name}"
    )


def database_env(name: str | None = None) -> dict[str, str]:
    """The variables that reach database `name` (default: the one pytest-django
    made) as the test process does: through the pooler when the run has one."""
    from django.conf import settings
    from django.db import connections

    # pytest-django renamed the database to the test one in the connection settings.
    pooled = connections["default"].settings_dict
    name = name or pooled["NAME"]
    env = {"DATABASE_URL": _url(pooled, name)}
    if settings.DB_POOLED:
        env["DB_POOL_MODE"] = "transaction"
        env["DATABASE_DIRECT_URL"] = _url(settings.DATABASE_DIRECT, name)
    return env


def production_environ() -> dict[str, str]:
    """A valid production environment pointing at the test database and Redis."""
    return clean_environ(
        **PRODUCTION_ENV,
        **database_env(),
        REDIS_URL=os.environ["REDIS_URL"],
        # Tests that want the worker's metrics port pick a free one.
        WORKER_METRICS_PORT="0",
    )
