"""`manage.py check --deploy` with a production environment, and our own checks."""

from __future__ import annotations

import os
import subprocess

from django.test import override_settings

from apps.core import checks
from runtime.env import REGISTRY
from tests.support.env import PRODUCTION_ENV, clean_environ
from tests.support.processes import run_python

PROD = {
    **PRODUCTION_ENV,
    # A remote database is reached with its certificate verified (core.W020).
    "DATABASE_URL": "postgres://app:pw@db.internal:5432/app"
    "?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.crt",
    # The deploy checks read the broker Redis's eviction policy: the run's own.
    "REDIS_URL": os.environ["REDIS_URL"],
    "METRICS_TOKEN": "m" * 32,
}


def check_deploy(**overrides: str) -> subprocess.CompletedProcess[str]:
    """`check --deploy --fail-level WARNING` with PROD and the overrides."""
    return run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=clean_environ(**{**PROD, **overrides}),
    )


def test_check_deploy_is_clean_with_production_environment() -> None:
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    # security.W021 (HSTS preload) is the only silenced check, on purpose.
    assert "System check identified no issues (1 silenced)." in result.stdout


def test_check_deploy_with_preload_opted_in_silences_nothing() -> None:
    result = check_deploy(SECURE_HSTS_PRELOAD="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_fails_on_plain_http() -> None:
    result = check_deploy(SECURE_SSL_REDIRECT="false")
    assert result.returncode == 1
    assert "security.W008" in result.stderr
    assert "core.W004" in result.stderr


@override_settings(ALLOWED_HOSTS=["*"])
def test_wildcard_host_check() -> None:
    assert [e.id for e in checks.check_allowed_hosts(None)] == ["core.E002"]


@override_settings(SECRET_KEY="dev-insecure-key")
def test_placeholder_secret_check() -> None:
    assert [e.id for e in checks.check_secret_key(None)] == ["core.E001"]


@override_settings(SECRET_KEY=REGISTRY["DJANGO_SECRET_KEY"].debug_default)
def test_development_secret_check() -> None:
    # The registry's rule: the key DEBUG runs with is a placeholder in production.
    assert [e.id for e in checks.check_secret_key(None)] == ["core.E001"]


@override_settings(SECRET_KEY="k" * 49)
def test_short_secret_check() -> None:
    assert [(e.id, e.msg) for e in checks.check_secret_key(None)] == [
        ("core.E001", "DJANGO_SECRET_KEY is 49 characters long, at least 50 needed.")
    ]


def test_sqlite_database_check() -> None:
    # DEBUG without a database runs on SQLite, which the deploy check refuses.
    result = run_python(
        ["manage.py", "check", "--deploy"],
        env=clean_environ(DEBUG="true"),
    )
    assert result.returncode == 1
    assert "core.E005" in result.stderr
    assert "The database is SQLite; use PostgreSQL." in result.stderr


@override_settings(METRICS_TOKEN="short")
def test_short_metrics_token_check() -> None:
    assert [e.id for e in checks.check_metrics_token(None)] == ["core.W003"]


def test_remote_database_without_verified_tls_is_warned() -> None:
    """sslmode unset (libpq's prefer), require or verify-ca/full, through the
    command an operator runs: only the verifying modes pass, and the warning names
    the variable, the host and the mode."""
    base = "postgres://app:pw@db.internal:5432/app"
    for query in ("", "?sslmode=prefer", "?sslmode=require"):
        result = check_deploy(DATABASE_URL=base + query)
        assert result.returncode == 1, result.stdout + result.stderr
        mode = query.partition("=")[2] or "prefer"
        assert (
            f"(core.W020) DATABASE_URL reaches PostgreSQL at db.internal with "
            f"sslmode={mode}: the server's certificate is not verified."
        ) in result.stderr
    for mode in ("verify-ca", "verify-full"):
        result = check_deploy(DATABASE_URL=f"{base}?sslmode={mode}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "core.W020" not in result.stdout + result.stderr


def test_local_database_needs_no_tls() -> None:
    """Loopback, and a single-label service name on the platform's own network
    (Compose's `db`, a Kubernetes Service such as the pooler's): the hop stays on
    that network. An address or a dotted name is remote."""
    for host in ("localhost", "127.0.0.1", "[::1]", "db", "inventory-pgbouncer"):
        result = check_deploy(DATABASE_URL=f"postgres://app:pw@{host}:5432/app")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "core.W020" not in result.stdout + result.stderr
    for host in ("10.0.3.7", "db.internal"):
        result = check_deploy(DATABASE_URL=f"postgres://app:pw@{host}:5432/app")
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"(core.W020) DATABASE_URL reaches PostgreSQL at {host}" in (
            result.stderr
        )


def test_direct_url_past_the_pooler_is_checked_too() -> None:
    result = check_deploy(
        DB_POOL_MODE="transaction",
        DATABASE_URL="postgres://app:pw@127.0.0.1:6432/app",
        DATABASE_DIRECT_URL="postgres://app:pw@db.internal:5432/app?sslmode=require",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "(core.W020) DATABASE_DIRECT_URL reaches PostgreSQL at db.internal with "
        "sslmode=require"
    ) in result.stderr
