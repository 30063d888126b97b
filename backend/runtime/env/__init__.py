"""The one registry of environment variables, and typed readers over it.

Every variable the project reads (Python or the entrypoint script) is declared here
once. Settings read the environment only through ``load()``; the docs and
``.env.example`` are generated from ``VARIABLES``. Validation collects every problem
before reporting, so an operator fixes a bad deployment in one round, not one
variable per restart.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

GROUPS = {
    "core": "Core",
    "database": "Database",
    "redis": "Redis and Celery",
    "http": "HTTP and security",
    "gunicorn": "Gunicorn (web role)",
    "observability": "Observability",
    "process": "Entrypoint and processes",
    "inventory": "Inventory",
}

TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})

# Values copied from tutorials and templates; a deployment that uses one has no secret.
PLACEHOLDER_SECRETS = frozenset(
    {
        "change-me",
        "changeme",
        "change_me",
        "dev-insecure-key",
        "secret",
        "secret-key",
        "your-secret-key",
        "your-secret-key-here",
        "django-insecure",
        "insecure",
        "replace-me",
        "please-change-me",
        "xxx",
    }
)
# Prefixes of generated development keys: Django's startproject and our own
# (DJANGO_SECRET_KEY's debug default), refused in production like any placeholder.
PLACEHOLDER_PREFIXES = ("django-insecure", "dev-insecure")
SECRET_KEY_MIN_LENGTH = 50
# Every secret value published in a file the project ships (.env.example, the guide,
# ENVIRONMENT_VARIABLES.md, docker-compose.yml, deploy/, railway files): whole values
# and the passwords of example URLs. Anyone can read them, so production refuses them
# in any sensitive variable; tests/config/test_public_secrets.py scans those files and
# fails when one holds a secret-looking value missing here.
PUBLIC_SECRETS = frozenset(
    {
        # .env.example (runtime/env/docs.py COMPOSE_VALUES): the local Compose setup.
        "compose-local-only-0f9d2c7b1e8a4d6f93b5c0e2a7d4f1b8c6e3a9d",
        "compose-local-metrics-token-not-secret",
        "app-local-password",
        # docker-compose.yml's POSTGRES_PASSWORD default, the registry's examples.
        "app",
        # Placeholders in the guide's and the registry's example URLs.
        "URL-ENCODED-PASSWORD",
        "AUTH-TOKEN",
        "TOKEN",
        "password",
        "<password>",
        # The rotation runbooks' placeholders.
        "<new>",
        "<old>",
    }
)
# The public values stay usable while every ALLOWED_HOSTS entry is one of these: a
# laptop running `cp .env.example .env && docker compose up`, reachable by nobody else.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# Roles whose process needs a broker: without one, web runs tasks inside requests
# (eager) and the worker consumes from memory://, silently nothing. migrate only
# talks to PostgreSQL.
BROKER_ROLES = ("web", "worker", "beat")
# Production needs one database: DATABASE_URL, or these three parts together.
POSTGRES_PARTS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
DATABASE_VARIABLES = ("DATABASE_URL", *POSTGRES_PARTS)
DATABASE_EXPECTED = "a postgres:// URL, or " + " + ".join(POSTGRES_PARTS)


class ConfigError(ValueError):
    """A variable's value does not meet what the registry expects."""


@dataclass(frozen=True)
class Var:
    """One environment variable: how to parse it and what it means."""

    name: str
    kind: str  # str, secret, bool, int, float, list, choice, url
    group: str
    doc: str
    default: Any = None
    debug_default: Any = None
    required_in_prod: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    schemes: tuple[str, ...] = ()
    example: str | None = None
    check: Callable[[Any], None] | None = field(default=None, compare=False)
    # A secret: may come from a file (NAME_FILE, Compose secrets, Kubernetes secret
    # volumes), and a value published in the project's files is refused in
    # production unless every ALLOWED_HOSTS entry is local.
    sensitive: bool = False

    @property
    def file_name(self) -> str:
        """The variable naming a file that holds this one's value."""
        return f"{self.name}_FILE"

    def expected(self) -> str:
        """Describe in words what a valid value looks like."""
        if self.kind == "bool":
            return "one of true/false/1/0/yes/no"
        if self.kind in {"int", "float"}:
            bounds = []
            if self.minimum is not None:
                bounds.append(f">= {self.minimum:g}")
            if self.maximum is not None:
                bounds.append(f"<= {self.maximum:g}")
            noun = "an integer" if self.kind == "int" else "a number"
            return f"{noun} {' and '.join(bounds)}".strip()
        if self.kind == "choice":
            return "one of " + "/".join(self.choices)
        if self.kind == "list":
            return "a comma-separated list"
        if self.kind == "url":
            return "a URL with scheme " + " or ".join(f"{s}://" for s in self.schemes)
        if self.kind == "secret" and self.name == "DJANGO_SECRET_KEY":
            return (
                f"a random string of at least {SECRET_KEY_MIN_LENGTH} characters, "
                "not a placeholder"
            )
        return "a string"


def check_secret_key(value: str) -> None:
    """Refuse a placeholder or development key, and one too short to be secret.

    Also the deploy check's rule (core.E001, apps/core/checks.py).
    """
    word = value.strip().lower()
    if word in PLACEHOLDER_SECRETS or word.startswith(PLACEHOLDER_PREFIXES):
        raise ConfigError("is a known placeholder, not a secret")
    if len(value) < SECRET_KEY_MIN_LENGTH:
        raise ConfigError(
            f"is {len(value)} characters long, at least {SECRET_KEY_MIN_LENGTH} needed"
        )


def _check_secret_keys(value: list[str]) -> None:
    for position, key in enumerate(value, start=1):
        try:
            check_secret_key(key)
        except ConfigError as exc:
            raise ConfigError(f"entry {position} {exc}") from None


def hosts_all_local(hosts: list[str] | None) -> bool:
    """True when every ALLOWED_HOSTS entry is the machine itself (none is empty)."""
    return bool(hosts) and all(host.lower() in LOCAL_HOSTS for host in hosts or [])


def published_in(var: Var, value: Any) -> bool:
    """Whether a sensitive variable's value (or its URL's password) is public."""
    if var.kind == "url":
        try:
            password = urlsplit(value).password
        except ValueError:
            return False
        return password is not None and unquote(password) in PUBLIC_SECRETS
    items = value if isinstance(value, list) else [value]
    return any(str(item).strip() in PUBLIC_SECRETS for item in items)


def check_hosts(value: list[str]) -> None:
    """Refuse '*' among the hosts (also the deploy check's core.E002)."""
    if "*" in value:
        raise ConfigError("contains '*', which accepts any Host header; list the hosts")


def check_database_vendor(vendor: str) -> None:
    """Refuse SQLite in production (also the deploy check's core.E005).

    `vendor` is a URL's scheme or a Django connection's vendor: both say "sqlite".
    """
    if vendor == "sqlite":
        raise ConfigError("is SQLite")


Sentinels = tuple[tuple[str, int], ...]


def _check_sentinels(value: list[str]) -> None:
    sentinels_parse(value)


def sentinels_parse(entries: list[str]) -> Sentinels:
    """Turn REDIS_SENTINELS' ["host:port", ...] into ((host, port), ...)."""
    parsed = []
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"has {entry!r}, which is not host:port")
        parsed.append((host.strip("[]"), int(port)))
    return tuple(parsed)


def _check_origins(value: list[str]) -> None:
    for origin in value:
        if origin == "*":
            raise ConfigError("contains '*'; list the origins explicitly")
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path:
            raise ConfigError(
                f"entry {origin!r} is not an origin like https://app.example.com"
            )


def _check_admin_url(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/", value):
        raise ConfigError("must be a relative path ending in '/', like 'admin/'")


def _check_throttle_rate(value: str) -> None:
    if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ConfigError("must look like '100/minute'")


VARIABLES: tuple[Var, ...] = (
    # --- core ---
    Var(
        "DEBUG",
        "bool",
        "core",
        "Development mode: embedded defaults, verbose errors. "
        "Never true in production.",
        default=False,
        example="false",
    ),
    Var(
        "DJANGO_SECRET_KEY",
        "secret",
        "core",
        "Django's signing key; at least 50 random characters.",
        required_in_prod=True,
        check=check_secret_key,
        debug_default="dev-insecure-key-only-for-local-development-never-in-production-0",
        sensitive=True,
    ),
    Var(
        "DJANGO_SECRET_KEY_FALLBACKS",
        "list",
        "core",
        "Previous signing keys (comma separated) while DJANGO_SECRET_KEY is "
        "rotated. Sessions, password-reset links and signed values made with them "
        "still verify; nothing new is signed with them. Remove them once the "
        "rotation window (SESSION_COOKIE_AGE, two weeks) is over.",
        default=[],
        check=_check_secret_keys,
        sensitive=True,
    ),
    Var(
        "ALLOWED_HOSTS",
        "list",
        "core",
        "Host names this service answers to (comma "
        "separated); '*' is rejected. Health probes work with any Host.",
        required_in_prod=True,
        check=check_hosts,
        debug_default=["localhost", "127.0.0.1", "[::1]", "testserver"],
        example="localhost,127.0.0.1",
    ),
    Var(
        "DJANGO_ADMIN_URL",
        "str",
        "core",
        "Path of the Django admin, ending in '/'.",
        default="admin/",
        check=_check_admin_url,
    ),
    Var(
        "APP_ROLE",
        "choice",
        "process",
        "Which process the image runs.",
        default="web",
        choices=("web", "worker", "beat", "migrate"),
    ),
    # --- database ---
    Var(
        "DATABASE_URL",
        "url",
        "database",
        f"PostgreSQL URL; or set {', '.join(POSTGRES_PARTS[:-1])} and "
        f"{POSTGRES_PARTS[-1]}. Required in production (one of the two). Beyond "
        "the local machine add ?sslmode=verify-full&sslrootcert=<CA file> "
        "(check --deploy warns core.W020 otherwise).",
        schemes=("postgres", "postgresql", "sqlite"),
        example="postgres://app:app@db:5432/app",
        sensitive=True,
    ),
    Var(
        "POSTGRES_USER",
        "str",
        "database",
        "Database user, when DATABASE_URL is not set.",
        example="app",
    ),
    Var(
        "POSTGRES_PASSWORD",
        "secret",
        "database",
        "Database password, when DATABASE_URL is not set.",
        example="app",
        sensitive=True,
    ),
    Var(
        "POSTGRES_DB",
        "str",
        "database",
        "Database name, when DATABASE_URL is not set.",
        example="app",
    ),
    Var(
        "POSTGRES_HOST",
        "str",
        "database",
        "Database host, when DATABASE_URL is not set.",
        default="localhost",
        example="db",
    ),
    Var(
        "POSTGRES_PORT",
        "int",
        "database",
        "Database port, when DATABASE_URL is not set.",
        default=5432,
        minimum=1,
        maximum=65535,
    ),
    Var(
        "DB_POOL_MODE",
        "choice",
        "database",
        "How DATABASE_URL reaches PostgreSQL: none (directly) or transaction (through "
        "a pooler in transaction mode: PgBouncer, RDS Proxy). Pooled: no startup "
        "options and no server-side cursors; the migrate role sets statement_timeout "
        "on the database role and takes its lock over DATABASE_DIRECT_URL.",
        default="none",
        choices=("none", "transaction"),
    ),
    Var(
        "DATABASE_DIRECT_URL",
        "url",
        "database",
        "PostgreSQL URL that bypasses the pooler, for what needs a session of its own "
        "(the migrate role's advisory lock and its migrations); defaults to "
        "DATABASE_URL.",
        schemes=("postgres", "postgresql"),
        example="postgres://app:app@db:5432/app",
        sensitive=True,
    ),
    Var(
        "DB_POOL_SIZE",
        "int",
        "database",
        "With DB_POOL_MODE=transaction: the most PostgreSQL connections the pooler "
        "opens for this database and user (PgBouncer's default_pool_size plus "
        "reserve_pool_size, times pooler replicas); the connection budget counts it "
        "instead of the replicas' own connections.",
        default=20,
        minimum=1,
    ),
    Var(
        "DB_POOL_MAX_CLIENTS",
        "int",
        "database",
        "With DB_POOL_MODE=transaction: the client connections the pooler accepts "
        "(PgBouncer's max_client_conn, times pooler replicas); the replicas' own "
        "connections must fit in it.",
        default=1000,
        minimum=1,
    ),
    Var(
        "DB_CONN_MAX_AGE",
        "int",
        "database",
        "Seconds a database connection is reused (forced to 0 under the ASGI worker).",
        default=600,
        minimum=0,
    ),
    Var(
        "DB_EXPECTED_REPLICAS",
        "int",
        "database",
        "Containers of this role expected at once (replicas, plus the surge of a "
        "rolling deploy); the start-up connection budget multiplies by it.",
        default=2,
        minimum=1,
        maximum=1000,
    ),
    Var(
        "DB_RESERVED_CONNECTIONS",
        "int",
        "database",
        "PostgreSQL connections the connection budget keeps free for the other "
        "roles, migrations, administrators and superuser_reserved_connections.",
        default=10,
        minimum=0,
    ),
    Var(
        "DB_CONNECT_TIMEOUT",
        "int",
        "database",
        "Seconds to wait for a database connection before failing.",
        default=5,
        minimum=1,
        maximum=60,
    ),
    Var(
        "DB_STATEMENT_TIMEOUT_MS",
        "int",
        "database",
        "Server-side statement_timeout in milliseconds; 0 disables it.",
        default=30000,
        minimum=0,
    ),
    # --- redis / celery ---
    Var(
        "REDIS_URL",
        "url",
        "redis",
        "Redis that must never evict (maxmemory-policy noeviction): Celery broker, "
        "RedBeat's lock, the inventory gate counters, task delivery counts, token "
        "revocation messages; also the cache unless REDIS_CACHE_URL is set. No task "
        "results: tasks record their outcome in PostgreSQL. Required in production "
        "for the web, worker and beat roles (unless CELERY_BROKER_URL names the "
        "broker); with DEBUG and without it: in-memory cache and eager Celery.",
        schemes=("redis", "rediss"),
        example="redis://redis:6379/0",
        sensitive=True,
    ),
    Var(
        "REDIS_SENTINELS",
        "list",
        "redis",
        "Redis Sentinel addresses (host:port, comma-separated). Set, every Redis "
        "client follows the master they name, also across a failover, and "
        "REDIS_URL names that master by its Sentinel name instead of a host: "
        "redis://:password@mymaster/0.",
        default=[],
        example="sentinel-1:26379,sentinel-2:26379,sentinel-3:26379",
        check=lambda value: _check_sentinels(value),
    ),
    Var(
        "REDIS_SENTINEL_PASSWORD",
        "secret",
        "redis",
        "Password of the sentinels themselves (their requirepass), when they have one.",
        sensitive=True,
    ),
    Var(
        "REDIS_CACHE_URL",
        "url",
        "redis",
        "Redis for Django's cache, the request throttle and the token brake only: "
        "losing a key costs a miss or admits a few more requests, so it may evict "
        "(e.g. allkeys-lru). Defaults to REDIS_URL.",
        schemes=("redis", "rediss"),
        example="redis://redis-cache:6379/0",
        sensitive=True,
    ),
    Var(
        "CELERY_BROKER_URL",
        "url",
        "redis",
        "Celery broker, when it differs from REDIS_URL.",
        schemes=("redis", "rediss", "amqp", "amqps"),
        sensitive=True,
    ),
    Var(
        "REDIS_SOCKET_TIMEOUT",
        "float",
        "redis",
        "Seconds to wait for a Redis connect or reply before treating Redis as down.",
        default=1.0,
        minimum=0.05,
        maximum=30,
    ),
    Var(
        "CACHE_ERROR_LOG_INTERVAL",
        "int",
        "redis",
        "Seconds between two log lines about the same cache (Redis) failure.",
        default=60,
        minimum=1,
    ),
    # --- http / security ---
    Var(
        "CORS_ALLOWED_ORIGINS",
        "list",
        "http",
        "Browser origins allowed to call the API (comma separated, explicit).",
        required_in_prod=True,
        check=_check_origins,
        debug_default=["http://localhost:3000"],
        example="http://localhost:3000",
    ),
    Var(
        "CSRF_TRUSTED_ORIGINS",
        "list",
        "http",
        "Origins trusted for unsafe requests with session auth (comma separated).",
        default=[],
        check=_check_origins,
    ),
    Var(
        "SECURE_PROXY_SSL_HEADER",
        "bool",
        "http",
        "Trust X-Forwarded-Proto: https from "
        "the proxy in front (turn off when nothing sets that header).",
        default=True,
        debug_default=False,
    ),
    Var(
        "SECURE_SSL_REDIRECT",
        "bool",
        "http",
        "Redirect plain HTTP to HTTPS (health paths are exempt).",
        default=True,
        debug_default=False,
    ),
    Var(
        "SECURE_HSTS_SECONDS",
        "int",
        "http",
        "Strict-Transport-Security max-age; 0 turns HSTS off.",
        default=31536000,
        debug_default=0,
        minimum=0,
    ),
    Var(
        "SECURE_HSTS_PRELOAD",
        "bool",
        "http",
        "Ask browsers to preload HSTS (hard to undo: opt in knowingly).",
        default=False,
    ),
    Var(
        "TRUSTED_PROXY_COUNT",
        "int",
        "http",
        "How many proxies in front append to "
        "X-Forwarded-For; the client IP is the right-most hop they did not add.",
        default=0,
        minimum=0,
        maximum=10,
    ),
    Var(
        "MAX_REQUEST_BODY_BYTES",
        "int",
        "http",
        "Largest request body accepted; larger bodies get 413.",
        default=1048576,
        minimum=1024,
    ),
    Var(
        "API_THROTTLE_ANON",
        "str",
        "http",
        "Request rate for anonymous clients, per client IP.",
        default="60/minute",
        check=_check_throttle_rate,
    ),
    Var(
        "AUTH_FAILURE_LIMIT",
        "int",
        "http",
        "Failed token authentications allowed per client IP per minute; more get 429.",
        default=20,
        minimum=1,
    ),
    Var(
        "LOGIN_FAILURE_LIMIT",
        "int",
        "http",
        "Failed password logins (the admin) allowed per account within "
        "LOGIN_LOCKOUT_SECONDS of the first; then the account is refused, right "
        "password included, until that window ends (the admin answers 429).",
        default=5,
        minimum=1,
    ),
    Var(
        "LOGIN_FAILURE_LIMIT_PER_IP",
        "int",
        "http",
        "Failed password logins allowed per client IP, over all accounts, within "
        "LOGIN_LOCKOUT_SECONDS of the first; then that address is refused.",
        default=20,
        minimum=1,
    ),
    Var(
        "LOGIN_LOCKOUT_SECONDS",
        "int",
        "http",
        "Window of the failed-login counters, from the first failure: how long a "
        "locked-out account or address waits at most.",
        default=900,
        minimum=1,
    ),
    Var(
        "AUTH_TOKEN_CACHE_SECONDS",
        "float",
        "http",
        "Seconds a web process reuses a verified API token without asking the "
        "database; a token revoked outside the app stops working after at most "
        "this long (deleting it through the app revokes it at once). 0 disables.",
        default=5.0,
        minimum=0,
        maximum=300,
    ),
    Var(
        "API_THROTTLE_USER",
        "str",
        "http",
        "Request rate per authenticated user. Each web process adds its count to "
        "Redis every 1% of the rate (at most 32 requests, at least once a second): "
        "a window may admit up to (web processes - 1) x 31 requests more. Rates "
        "below 200 per period are counted exactly.",
        default="6000/minute",
        check=_check_throttle_rate,
    ),
    # --- gunicorn ---
    Var(
        "PORT",
        "int",
        "gunicorn",
        "Port the web role listens on (Railway injects it).",
        default=5000,
        minimum=1,
        maximum=65535,
    ),
    Var(
        "GUNICORN_WORKERS",
        "int",
        "gunicorn",
        "Worker processes; default 2 x usable "
        "CPUs + 1 (affinity and cgroup quota), capped by GUNICORN_MAX_WORKERS.",
        minimum=1,
        maximum=256,
    ),
    Var(
        "GUNICORN_MAX_WORKERS",
        "int",
        "gunicorn",
        "Upper bound on the computed worker count.",
        default=12,
        minimum=1,
        maximum=256,
    ),
    Var(
        "GUNICORN_WORKER_CLASS",
        "choice",
        "gunicorn",
        "gthread (WSGI, default) or uvicorn (ASGI; forces DB_CONN_MAX_AGE=0).",
        default="gthread",
        choices=("gthread", "uvicorn"),
    ),
    Var(
        "GUNICORN_THREADS",
        "int",
        "gunicorn",
        "Threads per gthread worker.",
        default=4,
        minimum=1,
        maximum=64,
    ),
    Var(
        "GUNICORN_TIMEOUT",
        "int",
        "gunicorn",
        "Seconds a request may run before its worker is killed.",
        default=120,
        minimum=1,
    ),
    Var(
        "GUNICORN_GRACEFUL_TIMEOUT",
        "int",
        "gunicorn",
        "Seconds workers get to finish requests after SIGTERM.",
        default=30,
        minimum=1,
    ),
    Var(
        "WEB_DRAIN_SECONDS",
        "int",
        "gunicorn",
        "Seconds between SIGTERM and the listener closing: /health/ready/ answers 503 "
        "and every response closes its connection, so load balancers stop routing "
        "here while requests already sent are served. Then the graceful stop "
        "(GUNICORN_GRACEFUL_TIMEOUT) begins; stop budgets must exceed both. 0: none.",
        default=10,
        minimum=0,
        maximum=300,
    ),
    Var(
        "GUNICORN_KEEPALIVE",
        "int",
        "gunicorn",
        "Seconds an idle keep-alive connection "
        "stays open (above load balancer idle timeouts).",
        default=75,
        minimum=0,
    ),
    Var(
        "GUNICORN_MAX_REQUESTS",
        "int",
        "gunicorn",
        "Requests after which a worker is recycled; 0 turns recycling off.",
        default=10000,
        minimum=0,
    ),
    Var(
        "GUNICORN_MAX_REQUESTS_JITTER",
        "int",
        "gunicorn",
        "Random extra requests so workers do not recycle together.",
        default=1000,
        minimum=0,
    ),
    Var(
        "FORWARDED_ALLOW_IPS",
        "str",
        "gunicorn",
        "Proxy addresses gunicorn trusts for "
        "X-Forwarded-* headers ('*' when only the load balancer can reach the app).",
        default="127.0.0.1",
    ),
    # --- entrypoint and processes ---
    Var(
        "DEPENDENCY_WAIT_TIMEOUT",
        "int",
        "process",
        "Seconds the entrypoint waits for PostgreSQL and Redis before giving up.",
        default=60,
        minimum=0,
    ),
    Var(
        "RUN_MIGRATIONS",
        "bool",
        "process",
        "Let the web role apply migrations at start (under the migration lock); the "
        "migrate role always does.",
        default=False,
    ),
    Var(
        "MIGRATION_LOCK_TIMEOUT",
        "int",
        "process",
        "Seconds a starting replica waits for another one's migration lock.",
        default=300,
        minimum=1,
    ),
    Var(
        "MIGRATION_WAIT_TIMEOUT",
        "int",
        "process",
        "Seconds worker and beat wait for pending migrations to be applied.",
        default=300,
        minimum=0,
    ),
    Var(
        "HEARTBEAT_DIR",
        "str",
        "process",
        "Writable directory for worker and beat heartbeat files (the healthcheck reads "
        "them).",
        default="/tmp",
    ),
    Var(
        "HEARTBEAT_STALE_SECONDS",
        "int",
        "process",
        "Age after which a worker or beat heartbeat means unhealthy. A worker's "
        "heartbeat is refreshed only by consuming: a canary task sent to its own "
        "queue every quarter of this window (or while all its pool slots run tasks "
        "inside their time limit, or while it reconnects to the broker).",
        default=60,
        minimum=10,
    ),
    Var(
        "HEALTH_WATCHDOG_SECONDS",
        "int",
        "process",
        "Seconds a worker or beat may stay unhealthy (its own healthcheck failing) "
        "before the process exits non-zero, so that a restart policy (Compose, "
        "Railway) replaces it; 0 turns it off (Kubernetes and ECS: the probes "
        "replace it).",
        default=30,
        minimum=0,
    ),
    Var(
        "CELERY_WORKER_CONCURRENCY",
        "int",
        "process",
        "Task processes per worker container.",
        default=2,
        minimum=1,
        maximum=64,
    ),
    Var(
        "CELERY_WORKER_QUEUES",
        "list",
        "process",
        "Queues the worker consumes (comma separated).",
        default=["celery"],
    ),
    # The project's tasks (expiry, reconciliation, canaries) run for seconds; the limits
    # leave room for a large backlog or catalog, and the visibility timeout, the time a
    # SIGKILLed worker's task waits in Redis before another worker gets it, stays in
    # minutes. Tasks are batched and idempotent: one stopped at its limit resumes at
    # its next scheduled run.
    Var(
        "CELERY_TASK_TIME_LIMIT",
        "int",
        "process",
        "Hard time limit of a task in seconds (the process is killed); must be "
        "above CELERY_TASK_SOFT_TIME_LIMIT and below CELERY_VISIBILITY_TIMEOUT.",
        default=180,
        minimum=1,
    ),
    Var(
        "CELERY_TASK_SOFT_TIME_LIMIT",
        "int",
        "process",
        "Soft time limit in seconds (the task gets an exception to clean up); must "
        "be below CELERY_TASK_TIME_LIMIT.",
        default=120,
        minimum=1,
    ),
    Var(
        "CELERY_VISIBILITY_TIMEOUT",
        "int",
        "process",
        "Seconds before Redis redelivers an unacknowledged task, so how long the "
        "task of a lost worker (SIGKILL, node gone) waits before another worker runs "
        "it; must exceed CELERY_TASK_TIME_LIMIT, or a late-acked running task is "
        "delivered twice.",
        default=300,
        minimum=1,
    ),
    Var(
        "CELERY_WORKER_MAX_TASKS_PER_CHILD",
        "int",
        "process",
        "Tasks after which a pool process is replaced (bounds leaks).",
        default=100,
        minimum=1,
    ),
    Var(
        "CELERY_TASK_MAX_DELIVERIES",
        "int",
        "process",
        "Deliveries of one task (per retry) before it is recorded as failed instead "
        "of run again: bounds a task that kills its worker each time.",
        default=5,
        minimum=1,
        maximum=100,
    ),
    Var(
        "CELERY_SOFT_SHUTDOWN_TIMEOUT",
        "float",
        "process",
        "Seconds running tasks get after SIGTERM before they are requeued; keep it "
        "inside the platform's stop grace period.",
        default=20.0,
        minimum=0,
    ),
    Var(
        "CELERY_BROKER_TIMEOUT",
        "float",
        "process",
        "Seconds to connect to or hear from the broker before an enqueue fails.",
        default=2.0,
        minimum=0.1,
        maximum=60,
    ),
    Var(
        "CELERY_BEAT_MAX_LOOP_INTERVAL",
        "int",
        "process",
        "Longest sleep of the beat scheduler in seconds (its heartbeat period).",
        default=5,
        minimum=1,
        maximum=60,
    ),
    # --- observability ---
    Var(
        "LOG_FORMAT",
        "choice",
        "observability",
        "json (one object per line) or console.",
        default="json",
        debug_default="console",
        choices=("json", "console"),
    ),
    Var(
        "LOG_LEVEL",
        "choice",
        "observability",
        "Minimum level logged.",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    ),
    Var(
        "METRICS_TOKEN",
        "secret",
        "observability",
        "Bearer token for /metrics; without it /metrics answers 404.",
        sensitive=True,
    ),
    Var(
        "METRICS_TOKEN_PREVIOUS",
        "secret",
        "observability",
        "The metrics token being rotated out: web's /metrics and the worker's port "
        "accept it besides METRICS_TOKEN until it is removed, so Prometheus can "
        "switch tokens without a scrape gap.",
        sensitive=True,
    ),
    Var(
        "PROMETHEUS_MULTIPROC_DIR",
        "str",
        "observability",
        "Directory where web and worker processes share metrics; the entrypoint sets "
        "and empties it (under HEARTBEAT_DIR).",
    ),
    Var(
        "WORKER_METRICS_PORT",
        "int",
        "observability",
        "Port of the worker's own /metrics (Celery task outcomes and durations); 0 "
        "turns it off.",
        default=9808,
        minimum=0,
        maximum=65535,
    ),
    Var(
        "SENTRY_DSN",
        "secret",
        "observability",
        "Sentry DSN; Sentry is off without it.",
        sensitive=True,
    ),
    Var(
        "SENTRY_ENVIRONMENT",
        "str",
        "observability",
        "Environment name reported to Sentry.",
        default="production",
    ),
    Var(
        "SENTRY_RELEASE",
        "str",
        "observability",
        "Release reported to Sentry (image tag or commit).",
    ),
    Var(
        "SENTRY_TRACES_SAMPLE_RATE",
        "float",
        "observability",
        "Share of requests traced by Sentry.",
        default=0.0,
        minimum=0.0,
        maximum=1.0,
    ),
    Var(
        "RESERVATION_MAX_UNITS_PER_OWNER",
        "int",
        "inventory",
        "Units one account may hold in active reservations at once; a reservation "
        "above it is 409 reservation_limit_exceeded.",
        default=1000,
        minimum=1,
    ),
    Var(
        "RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR",
        "int",
        "inventory",
        "Units one account may reserve within any hour, whatever became of the "
        "reservations (confirmed, cancelled, expired); above it is 409 "
        "reservation_rate_exceeded.",
        default=3000,
        minimum=1,
    ),
)

REGISTRY: dict[str, Var] = {var.name: var for var in VARIABLES}


def parse_bool(raw: str) -> bool:
    """Parse true/false/1/0/yes/no in any case."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{raw!r} is not a boolean")


# A URL's user name and password must percent-encode these; unencoded, they end the
# authority early and the rest of the password is read as port, path or fragment.
URL_ENCODING_HINT = (
    "percent-encode '#', '/', '?', '@' and ':' in the user name and password "
    "(%23, %2F, %3F, %40, %3A)"
)


def _parse_url(var: Var, raw: str) -> str:
    """Validate a URL. No message quotes any part of it: a password holding '#',
    '/' or '?' is cut there, and its pieces land in the port, path or fragment."""
    try:
        parts = urlsplit(raw)
        port = parts.port  # raises ValueError on a non-numeric port
    except ValueError:
        # The exception's text quotes the "port": often a piece of the password.
        raise ConfigError(
            f"is not a valid URL (its host or port does not parse; {URL_ENCODING_HINT})"
        ) from None
    authority_end = len(parts.scheme) + 3 + len(parts.netloc)
    if raw[: len(parts.scheme) + 3].endswith("://") and "@" in raw[authority_end:]:
        # An '@' past the host: the user name or password holds an unencoded
        # '/', '?' or '#' and the URL parsed with the wrong host.
        raise ConfigError(
            f"is not a valid URL ('@' after the host; {URL_ENCODING_HINT})"
        )
    if parts.scheme not in var.schemes:
        raise ConfigError(
            f"has scheme {parts.scheme or '(none)'!r}, expected "
            + " or ".join(var.schemes)
        )
    if parts.scheme != "sqlite" and not parts.hostname:
        raise ConfigError("has no host")
    if parts.scheme in {"postgres", "postgresql"} and not parts.path.strip("/"):
        raise ConfigError("names no database (add /<dbname>)")
    del port
    return raw


def parse_value(var: Var, raw: str) -> Any:
    """Turn one raw string into the registry's type, or raise ConfigError."""
    if var.kind == "bool":
        value: Any = parse_bool(raw)
    elif var.kind == "int":
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{raw!r} is not an integer") from None
    elif var.kind == "float":
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(f"{raw!r} is not a number") from None
    elif var.kind == "list":
        value = [item.strip() for item in raw.split(",") if item.strip()]
    elif var.kind == "choice":
        value = raw.strip()
        if value not in var.choices:
            raise ConfigError(f"{raw!r} is not one of {', '.join(var.choices)}")
    elif var.kind == "url":
        value = _parse_url(var, raw.strip())
    else:
        value = raw
    if var.kind in {"int", "float"}:
        if var.minimum is not None and value < var.minimum:
            raise ConfigError(f"{value} is below the minimum {var.minimum:g}")
        if var.maximum is not None and value > var.maximum:
            raise ConfigError(f"{value} is above the maximum {var.maximum:g}")
    if var.check is not None:
        var.check(value)
    return value


@dataclass
class Problem:
    name: str
    message: str
    expected: str


@dataclass
class Config:
    """Parsed values of every registered variable, plus the problems found."""

    values: dict[str, Any]
    problems: list[Problem]
    debug: bool

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str) -> Any:
        if name not in REGISTRY:
            raise KeyError(f"{name} is not in the variable registry (runtime/env/)")
        return self.values.get(name)

    @property
    def database_url(self) -> str | None:
        return self.values.get("_DATABASE_URL")

    @property
    def database_direct_url(self) -> str | None:
        """DATABASE_DIRECT_URL, else the pooled (or only) database URL."""
        return self.values.get("_DATABASE_DIRECT_URL")


def _postgres_url_from_parts(values: Mapping[str, Any]) -> str:
    user = quote(values["POSTGRES_USER"], safe="")
    password = quote(values["POSTGRES_PASSWORD"], safe="")
    host = values["POSTGRES_HOST"]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address needs brackets in a URL
    return (
        f"postgres://{user}:{password}@{host}:{values['POSTGRES_PORT']}/"
        f"{quote(values['POSTGRES_DB'], safe='')}"
    )


def _task_time_problems(*, values: Mapping[str, Any]) -> list[Problem]:
    """Keep soft limit < hard limit < visibility timeout.

    With late acks on Redis, a message unacknowledged for longer than the visibility
    timeout is delivered again: a task still running (up to its hard limit), or one
    waiting for a countdown, ETA or retry delay, would run twice. The project's tasks
    use no countdown, ETA or retry delay (tests/config/test_env.py guards this); one
    that does must add its delay here.
    """
    soft = values.get("CELERY_TASK_SOFT_TIME_LIMIT")
    hard = values.get("CELERY_TASK_TIME_LIMIT")
    visibility = values.get("CELERY_VISIBILITY_TIMEOUT")
    problems: list[Problem] = []
    if soft is not None and hard is not None and soft >= hard:
        problems.append(
            Problem(
                "CELERY_TASK_SOFT_TIME_LIMIT",
                f"({soft}) is not below CELERY_TASK_TIME_LIMIT ({hard})",
                "a soft limit below the hard one, or the task never gets to clean up",
            )
        )
    if visibility is not None and hard is not None and visibility <= hard:
        problems.append(
            Problem(
                "CELERY_VISIBILITY_TIMEOUT",
                f"({visibility}) is not above CELERY_TASK_TIME_LIMIT ({hard})",
                "a value above the hard time limit, or late-acked tasks run twice",
            )
        )
    return problems


def _read_secret_file(path: str) -> str:
    """A `*_FILE`'s value: the file's text, its trailing newline stripped.

    Messages name the path, never the content: the file holds a secret.
    """
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"names {path}, which cannot be read ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"names {path}, which is not UTF-8 text") from None
    # `echo value > file` and editors add a newline that is no part of the secret.
    value = content.rstrip("\r\n")
    if not value.strip():
        raise ConfigError(f"names {path}, which is empty")
    return value


def _public_secret_problems(*, values: Mapping[str, Any], debug: bool) -> list[Problem]:
    """Refuse a published secret (PUBLIC_SECRETS) unless the hosts are all local.

    The exception keeps `cp .env.example .env && docker compose up` working on a
    laptop; the first non-local host (a real deployment) makes each one an error.
    """
    if debug or hosts_all_local(values.get("ALLOWED_HOSTS")):
        return []
    problems = []
    for var in VARIABLES:
        value = values.get(var.name)
        if not var.sensitive or not value or not published_in(var, value):
            continue
        what = "has a password" if var.kind == "url" else "is a value"
        problems.append(
            Problem(
                var.name,
                f"{what} published in this project's files (.env.example, the "
                "guide, the manifests), a placeholder, not a secret",
                "a value of your own (generate it), or every ALLOWED_HOSTS entry "
                "local (" + ", ".join(sorted(LOCAL_HOSTS - {"[::1]"})) + ")",
            )
        )
    return problems


def _broker_problems(
    *, values: Mapping[str, Any], debug: bool, reported: set[str]
) -> list[Problem]:
    """Web, worker and beat need a broker outside DEBUG (see BROKER_ROLES).

    A missing setting, refused at start; a Redis that is *down* is an outage, which
    web rides out degraded (the entrypoint's dependency wait).
    """
    role = values.get("APP_ROLE")
    if debug or role not in BROKER_ROLES:
        return []
    if values.get("REDIS_URL") or values.get("CELERY_BROKER_URL"):
        return []
    if reported & {"REDIS_URL", "CELERY_BROKER_URL"}:
        return []  # set, but unusable: a problem above already names it
    return [
        Problem(
            "REDIS_URL",
            f"is missing (and CELERY_BROKER_URL too): the {role} role needs a broker",
            "a redis:// URL, or CELERY_BROKER_URL",
        )
    ]


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate every registered variable; collect problems, never raise."""
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    values: dict[str, Any] = {}

    def raw_of(name: str) -> str | None:
        raw = environ.get(name)
        # Compose and ECS pass unset optional values as empty strings: treat as unset.
        return None if raw is None or raw.strip() == "" else raw

    debug = False
    debug_raw = raw_of("DEBUG")
    if debug_raw is not None:
        try:
            debug = parse_bool(debug_raw)
        except ConfigError as exc:
            problems.append(Problem("DEBUG", str(exc), REGISTRY["DEBUG"].expected()))

    # Variables set but unusable, for a reason already reported (a bad value or
    # *_FILE): no second "is missing" about them.
    reported: set[str] = set()
    for var in VARIABLES:
        raw = raw_of(var.name)
        source = ""
        path = raw_of(var.file_name) if var.sensitive else None
        if path is not None:
            if raw is not None:
                problems.append(
                    Problem(
                        var.file_name,
                        f"and {var.name} are both set",
                        f"one of the two: the value in {var.name}, or a file "
                        f"holding it in {var.file_name}",
                    )
                )
                reported.add(var.name)
                values[var.name] = var.default
                continue
            try:
                raw = _read_secret_file(path)
            except ConfigError as exc:
                problems.append(
                    Problem(
                        var.file_name, str(exc), "a readable file holding the value"
                    )
                )
                reported.add(var.name)
                values[var.name] = var.default
                continue
            source = f"(read from {var.file_name}={path}) "
        if raw is None:
            if debug and var.debug_default is not None:
                values[var.name] = var.debug_default
            elif var.required_in_prod and not debug:
                problems.append(Problem(var.name, "is missing", var.expected()))
                values[var.name] = None
            else:
                values[var.name] = var.default
            continue
        try:
            values[var.name] = parse_value(var, raw)
        except ConfigError as exc:
            problems.append(Problem(var.name, source + str(exc), var.expected()))
            reported.add(var.name)
            values[var.name] = var.default
    values["DEBUG"] = debug

    problems.extend(_task_time_problems(values=values))
    problems.extend(_public_secret_problems(values=values, debug=debug))
    named = reported | {problem.name for problem in problems}
    problems.extend(_broker_problems(values=values, debug=debug, reported=named))
    if values.get("METRICS_TOKEN_PREVIOUS") and not values.get("METRICS_TOKEN"):
        problems.append(
            Problem(
                "METRICS_TOKEN_PREVIOUS",
                "is set without METRICS_TOKEN",
                "the new token in METRICS_TOKEN while the old one is accepted",
            )
        )

    # One database is required in production: a URL, or the three POSTGRES_* parts.
    parts = POSTGRES_PARTS
    if values.get("DATABASE_URL"):
        values["_DATABASE_URL"] = values["DATABASE_URL"]
        try:
            if not debug:
                check_database_vendor(urlsplit(values["DATABASE_URL"]).scheme)
        except ConfigError as exc:
            problems.append(
                Problem("DATABASE_URL", str(exc), "a postgres:// URL in production")
            )
    elif all(values.get(name) for name in parts):
        values["_DATABASE_URL"] = _postgres_url_from_parts(values)
    elif any(values.get(name) for name in parts):
        missing = [name for name in parts if not values.get(name)]
        for name in missing:
            problems.append(
                Problem(name, "is missing", "set with the other POSTGRES_* variables")
            )
        values["_DATABASE_URL"] = None
    elif debug:
        values["_DATABASE_URL"] = None  # settings fall back to SQLite
    else:
        if "DATABASE_URL" not in reported:
            problems.append(Problem("DATABASE_URL", "is missing", DATABASE_EXPECTED))
        values["_DATABASE_URL"] = None
    if values.get("REDIS_SENTINELS") and not values.get("REDIS_URL"):
        problems.append(
            Problem(
                "REDIS_SENTINELS",
                "is set without REDIS_URL",
                "REDIS_URL naming the master: redis://[:password@]<master-name>/<db>",
            )
        )
    # Session work (the migration lock) needs a connection the pooler cannot hand
    # to another client between statements.
    values["_DATABASE_DIRECT_URL"] = (
        values.get("DATABASE_DIRECT_URL") or values["_DATABASE_URL"]
    )
    if values.get("DATABASE_DIRECT_URL") and not values["_DATABASE_URL"]:
        problems.append(
            Problem(
                "DATABASE_DIRECT_URL",
                "is set without a database to bypass",
                "set with DATABASE_URL (or the POSTGRES_* parts)",
            )
        )
    return Config(values=values, problems=problems, debug=debug)


def format_problems(problems: list[Problem]) -> str:
    """Render all problems as one block an operator can act on."""
    noun = "problem" if len(problems) == 1 else "problems"
    lines = [
        f"Invalid configuration: {len(problems)} {noun} with environment variables:"
    ]
    for problem in problems:
        lines.append(
            f"  - {problem.name} {problem.message}; expected {problem.expected}"
        )
    lines.append("See ENVIRONMENT_VARIABLES.md. Nothing was started.")
    return "\n".join(lines)


def load_or_exit(environ: Mapping[str, str] | None = None) -> Config:
    """Load the configuration; on any problem print one block and exit with status 1."""
    config = load(environ)
    if config.problems:
        sys.stderr.write(format_problems(config.problems) + "\n")
        sys.stderr.flush()
        # SystemExit, not an exception: the operator needs the block, not a traceback.
        raise SystemExit(1)
    return config


def main(argv: list[str]) -> int:
    """`python -m runtime.env` validates; `--get NAME` prints one parsed value."""
    config = load_or_exit()
    if len(argv) == 2 and argv[0] == "--get":
        print(config.get(argv[1]))
        return 0
    print("Configuration OK")
    return 0
