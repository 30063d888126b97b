"""The project's own deploy checks, run by `manage.py check --deploy`.

Stable ids: core.E001 (placeholder secret), core.E002 (wildcard host), core.W003
(short metrics token), core.W004 (SSL header trusted without a redirect), core.E005
(SQLite in production), core.W006 (PostgreSQL connection budget exceeded) and
core.W012 (statement_timeout missing through the pooler) — these two are database
checks: `check --deploy --database default` —, core.W007 (the broker's Redis can
evict), core.I008 (its eviction policy could not be read), core.W020 (a remote
database reached without a verified TLS certificate).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Tags, Warning, register
from django.db import connections

from runtime import env
from runtime.env import SECRET_KEY_MIN_LENGTH, ConfigError

METRICS_TOKEN_MIN_LENGTH = 24


# The rules are the variable registry's (runtime/env/): a value the environment
# could not set (a settings override, a settings module of its own) still meets them.


@register(Tags.security, deploy=True)
def check_secret_key(app_configs: Any, **kwargs: Any) -> list[Error]:
    try:
        env.check_secret_key(settings.SECRET_KEY)
    except ConfigError as exc:
        return [
            Error(
                f"DJANGO_SECRET_KEY {exc}.",
                hint=f"Generate {SECRET_KEY_MIN_LENGTH}+ random characters.",
                id="core.E001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_allowed_hosts(app_configs: Any, **kwargs: Any) -> list[Error]:
    try:
        env.check_hosts(settings.ALLOWED_HOSTS)
    except ConfigError:
        return [Error("ALLOWED_HOSTS contains '*'.", id="core.E002")]
    return []


@register(Tags.security, deploy=True)
def check_metrics_token(app_configs: Any, **kwargs: Any) -> list[Warning]:
    token = settings.METRICS_TOKEN
    if token and len(token) < METRICS_TOKEN_MIN_LENGTH:
        return [
            Warning(
                f"METRICS_TOKEN is shorter than {METRICS_TOKEN_MIN_LENGTH} characters.",
                id="core.W003",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_proxy_header(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if (
        getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        and not settings.SECURE_SSL_REDIRECT
    ):
        return [
            Warning(
                "SECURE_PROXY_SSL_HEADER is trusted but SECURE_SSL_REDIRECT is off.",
                hint="Plain HTTP requests will be served; turn the redirect on.",
                id="core.W004",
            )
        ]
    return []


@register("core", deploy=True)
def check_database_engine(app_configs: Any, **kwargs: Any) -> list[Error]:
    try:
        env.check_database_vendor(connections["default"].vendor)
    except ConfigError:
        return [Error("The database is SQLite; use PostgreSQL.", id="core.E005")]
    return []


# libpq's default sslmode (prefer) encrypts when the server offers TLS but verifies
# nothing: whoever answers on the path, or strips TLS off it, gets the password.
# Only these two modes check the server's certificate against a CA.
VERIFYING_SSLMODES = ("verify-ca", "verify-full")
LOCAL_DATABASE_HOSTS = {"", "localhost", "127.0.0.1", "::1"}


def _database_host_is_local(host: str) -> bool:
    """Loopback, a Unix socket (an absolute path), or a single-label name: a Compose
    service (`db`, `pgbouncer`) or a Kubernetes Service of the namespace
    (`inventory-pgbouncer`), reached on the platform's own network. A managed
    database is a dotted name or an address, and that hop is the one to verify
    (pooled, it is DATABASE_DIRECT_URL's and the pooler's upstream)."""
    if host in LOCAL_DATABASE_HOSTS or host.startswith("/"):
        return True
    return "." not in host and ":" not in host


@register(Tags.security, deploy=True)
def check_database_tls(app_configs: Any, **kwargs: Any) -> list[Warning]:
    databases = {"default": connections.settings["default"]}
    direct = getattr(settings, "DATABASE_DIRECT", None)
    if direct is not None and direct.get("HOST") != databases["default"].get("HOST"):
        databases["direct"] = direct
    warnings = []
    for name, database in databases.items():
        if "sqlite" in database.get("ENGINE", ""):
            continue  # core.E005's concern
        host = str(database.get("HOST") or "")
        sslmode = (database.get("OPTIONS") or {}).get("sslmode", "prefer")
        if _database_host_is_local(host) or sslmode in VERIFYING_SSLMODES:
            continue
        variable = "DATABASE_DIRECT_URL" if name == "direct" else "DATABASE_URL"
        warnings.append(
            Warning(
                f"{variable} reaches PostgreSQL at {host} with sslmode={sslmode}: "
                "the server's certificate is not verified.",
                hint="Add ?sslmode=verify-full&sslrootcert=<the CA's file> to the "
                "URL (verify-ca when the certificate cannot name the host).",
                id="core.W020",
            )
        )
    return warnings


@register(Tags.database, deploy=True)
def check_connection_budget(
    app_configs: Any, databases: Any = None, **kwargs: Any
) -> list[Warning]:
    # Database checks run only when asked for (`--database default`): they connect.
    if not databases or "default" not in databases:
        return []
    from apps.core.db.budget import connection_budget_compute

    warnings = []
    for role in ("web", "worker"):
        budget = connection_budget_compute(role=role, env=settings.ENV)
        if budget is not None and budget.exceeded:
            warnings.append(
                Warning(
                    f"PostgreSQL connection budget exceeded: {budget.describe()}.",
                    hint=f"{budget.POOLED_REMEDY}."
                    if budget.pooled
                    else "Lower GUNICORN_WORKERS/GUNICORN_THREADS or "
                    "CELERY_WORKER_CONCURRENCY, or DB_EXPECTED_REPLICAS, or raise the "
                    "server's max_connections (or put a pooler in front: "
                    "DB_POOL_MODE=transaction).",
                    id="core.W006",
                )
            )
    return warnings


@register(Tags.database, deploy=True)
def check_pooled_statement_timeout(
    app_configs: Any, databases: Any = None, **kwargs: Any
) -> list[Warning]:
    # Through a transaction pooler the timeout is the role's setting, written by the
    # migrate role; a session opened before that (or a role never migrated with
    # DB_POOL_MODE=transaction) runs without it.
    if not databases or "default" not in databases or not settings.DB_POOLED:
        return []
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return []
    from apps.core.db.pooling import statement_timeout_read

    actual = statement_timeout_read(connection=connection)
    expected = settings.DB_STATEMENT_TIMEOUT_MS
    if actual == expected:
        return []
    return [
        Warning(
            f"statement_timeout through the pooler is {actual} ms, "
            f"DB_STATEMENT_TIMEOUT_MS is {expected} ms.",
            hint="Run the migrate role with DB_POOL_MODE=transaction (it sets the "
            "role's statement_timeout), then RECONNECT on the pooler's console.",
            id="core.W012",
        )
    ]


@register("redis", deploy=True)
def check_redis_eviction(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """The broker's Redis (queue, RedBeat's lock, gate counters) must not evict."""
    from apps.core.redis.roles import eviction_policies_read

    messages: list[CheckMessage] = []
    for policy in eviction_policies_read(
        broker_url=settings.BROKER_URL_OWN,
        redis_url=settings.REDIS_URL,
        timeout=settings.REDIS_SOCKET_TIMEOUT,
        sentinel=settings.REDIS_SENTINEL,
    ):
        if policy.policy is None:
            # Managed Redis may forbid CONFIG: not knowing is no reason to fail.
            messages.append(Info(policy.describe() + ".", id="core.I008"))
        elif policy.can_evict:
            messages.append(
                Warning(
                    policy.describe() + ".",
                    hint="Run that Redis with maxmemory-policy noeviction "
                    "(ElastiCache: its parameter group); a cache that should evict "
                    "goes to a Redis of its own, REDIS_CACHE_URL.",
                    id="core.W007",
                )
            )
    return messages
