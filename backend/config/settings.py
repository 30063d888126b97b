"""Hardened settings: one module, read from the environment through runtime.env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url

from apps.core.redis.cache import CACHE_LOGGER
from apps.core.redis.sentinel import (
    SentinelTarget,
    celery_broker,
    django_redis_options,
    redbeat_redis,
    sentinel_target,
)
from runtime.env import load_or_exit, sentinels_parse
from runtime.probes import (
    LIVENESS_PATH,
    METRICS_PATH,
    READINESS_PATH,
    exact_path_patterns,
)

ENV = load_or_exit()

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core -------------------------------------------------------------------------

DEBUG: bool = ENV["DEBUG"]
SECRET_KEY: str = ENV["DJANGO_SECRET_KEY"]
# During a key rotation the old key still verifies what it signed (sessions,
# password-reset links, signed values); nothing new is signed with it.
SECRET_KEY_FALLBACKS: list[str] = ENV["DJANGO_SECRET_KEY_FALLBACKS"]
ALLOWED_HOSTS: list[str] = ENV["ALLOWED_HOSTS"]
ADMIN_URL: str = ENV["DJANGO_ADMIN_URL"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "corsheaders",
    "django_prometheus",
    "drf_spectacular",
    "apps.core",
    "apps.inventory",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # First, so that every response (probes, redirects included) carries its id.
    "apps.core.http.request_ids.RequestIdMiddleware",
    # Probes are answered before anything validates Host or redirects to HTTPS:
    # load balancers probe with the task's private IP over plain HTTP.
    "apps.core.http.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "apps.core.http.middleware.ResponseHeadersMiddleware",
    "apps.core.http.middleware.BodySizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.core.http.middleware.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.http.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Database ---------------------------------------------------------------------

# Under the ASGI worker every request runs in a fresh thread, and persistent
# connections are per thread: measured with CONN_MAX_AGE=600, a one-query view
# exhausted PostgreSQL ("too many clients") and answered 500s within seconds, where
# gthread with the same setting served ~3,600 req/s without an error.
ASGI_WORKER = ENV["GUNICORN_WORKER_CLASS"] == "uvicorn"
CONN_MAX_AGE = 0 if ASGI_WORKER else ENV["DB_CONN_MAX_AGE"]

DB_POOLED = ENV["DB_POOL_MODE"] == "transaction"
DB_STATEMENT_TIMEOUT_MS: int = ENV["DB_STATEMENT_TIMEOUT_MS"]


def _postgres_database(url: str, *, pooled: bool) -> dict[str, Any]:
    """Django's settings for one PostgreSQL URL, direct or through a pooler."""
    database = dj_database_url.parse(
        url, conn_max_age=CONN_MAX_AGE, conn_health_checks=True
    )
    # Prometheus query metrics, health checks only for idle connections (see there).
    database["ENGINE"] = "apps.core.db"
    options = database.setdefault("OPTIONS", {})
    options["connect_timeout"] = ENV["DB_CONNECT_TIMEOUT"]
    options.setdefault("application_name", f"backend-{ENV['APP_ROLE']}")
    if pooled:
        # A transaction pooler hands each transaction to any server connection:
        # PgBouncer refuses the startup `options` parameter, and a server-side
        # cursor's later FETCH may reach a connection that never opened it. The
        # statement_timeout comes from the role instead (apps/core/db/pooling.py).
        database["DISABLE_SERVER_SIDE_CURSORS"] = True
    else:
        # A runaway query is cancelled by the server instead of pinning a worker.
        options["options"] = f"-c statement_timeout={DB_STATEMENT_TIMEOUT_MS}"
    return database


if ENV.database_url and ENV.database_url.startswith("sqlite"):
    DATABASES = {
        "default": dj_database_url.parse(
            ENV.database_url, conn_max_age=CONN_MAX_AGE, conn_health_checks=True
        )
    }
    DATABASE_DIRECT: dict[str, Any] | None = None
elif ENV.database_url:
    # The migrate role's session (advisory lock, migrations) bypasses the pooler.
    DATABASE_DIRECT = _postgres_database(ENV.database_direct_url, pooled=False)
    # The whole migrate role connects directly: a server session it opened through
    # the pooler while waiting for the database would predate the statement_timeout
    # it then sets on the role, and keep serving other clients without it.
    if DB_POOLED and ENV["APP_ROLE"] != "migrate":
        DATABASES = {"default": _postgres_database(ENV.database_url, pooled=True)}
    else:
        DATABASES = {"default": dict(DATABASE_DIRECT)}
else:  # DEBUG with no database configured: the embedded default.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
        }
    }
    DATABASE_DIRECT = None

# --- Redis: cache, Celery ---------------------------------------------------------

# Two roles. REDIS_URL holds what must never be evicted (broker, RedBeat's lock, the
# gate counters, delivery counts): it needs maxmemory-policy noeviction (deploy check
# core.W007). REDIS_CACHE_URL holds what may be lost (cache, throttle and brake
# counters) and may evict; by default it is the same Redis.
REDIS_URL: str | None = ENV["REDIS_URL"]
REDIS_CACHE_URL: str | None = ENV["REDIS_CACHE_URL"] or REDIS_URL
REDIS_SOCKET_TIMEOUT: float = ENV["REDIS_SOCKET_TIMEOUT"]
CACHE_ERROR_LOG_INTERVAL: int = ENV["CACHE_ERROR_LOG_INTERVAL"]
# With REDIS_SENTINELS, every Redis client finds the master through the sentinels
# (apps/core/redis/sentinel.py) and follows a failover without a restart.
REDIS_SENTINEL: SentinelTarget | None = (
    sentinel_target(
        url=REDIS_URL,
        sentinels=sentinels_parse(ENV["REDIS_SENTINELS"]),
        sentinel_password=ENV["REDIS_SENTINEL_PASSWORD"],
        socket_timeout=REDIS_SOCKET_TIMEOUT,
    )
    if REDIS_URL and ENV["REDIS_SENTINELS"]
    else None
)


# The cache alias whose connection (`get_redis_connection`) reaches REDIS_URL; never
# used through Django's cache API.
DURABLE_REDIS_ALIAS = "durable"


def _redis_cache(*, url: str) -> dict[str, Any]:
    # The cache Redis is REDIS_URL's unless REDIS_CACHE_URL names another: only
    # REDIS_URL is behind the sentinels.
    sentinel = REDIS_SENTINEL if url == REDIS_URL else None
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "backend",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "CONNECTION_POOL_KWARGS": {"health_check_interval": 30},
            **(django_redis_options(sentinel) if sentinel else {}),
        },
    }


CACHES: dict[str, dict[str, Any]] = {
    "default": _redis_cache(url=REDIS_CACHE_URL)
    if REDIS_CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
if REDIS_URL:
    # Same URL and options as the cache by default: django-redis then shares one
    # connection pool between the two aliases.
    CACHES[DURABLE_REDIS_ALIAS] = _redis_cache(url=REDIS_URL)

# A Redis outage turns cache calls into misses instead of 500s; the rate-limited
# logger below reports it once per interval, not once per request.
DJANGO_REDIS_IGNORE_EXCEPTIONS = True
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = CACHE_LOGGER

# --- Celery (read by config/celery.py with namespace CELERY) ---------------------

# The broker's own URL when CELERY_BROKER_URL sets one, else None (the broker is
# REDIS_URL's Redis): what the Redis checks name when they inspect the broker. Not
# CELERY_-prefixed, so Celery's settings namespace does not read it.
BROKER_URL_OWN: str | None = ENV["CELERY_BROKER_URL"]
_sentinel_broker = celery_broker(REDIS_SENTINEL) if REDIS_SENTINEL else None
CELERY_BROKER_URL = (
    BROKER_URL_OWN
    or (_sentinel_broker[0] if _sentinel_broker else REDIS_URL)
    or "memory://"
)
# No result backend: tasks record their outcome in the database and nobody waits on
# a result. Celery's Redis result backend also refuses a plain `rediss://` URL (it
# demands `ssl_cert_reqs`, celery#8113), which would stop every worker on TLS Redis.
CELERY_RESULT_BACKEND = None
# Without a broker (local development) tasks run in-process.
CELERY_TASK_ALWAYS_EAGER = not (ENV["CELERY_BROKER_URL"] or REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
# Tasks record their outcome in the database; nobody waits on results, and skipping
# them keeps `.delay()` from also talking to the result backend.
CELERY_TASK_IGNORE_RESULT = True
# Ack after the task ran, so a task lost with its worker is delivered again...
CELERY_TASK_ACKS_LATE = True
# ...including when the pool process dies mid-task (OOM kill, SIGKILL): requeue now.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message reserved per process: a long task never holds others hostage.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = ENV["CELERY_TASK_TIME_LIMIT"]
CELERY_TASK_SOFT_TIME_LIMIT = ENV["CELERY_TASK_SOFT_TIME_LIMIT"]
# Replace pool processes now and then, so leaks in libraries stay bounded.
CELERY_WORKER_MAX_TASKS_PER_CHILD = ENV["CELERY_WORKER_MAX_TASKS_PER_CHILD"]
CELERY_WORKER_CONCURRENCY = ENV["CELERY_WORKER_CONCURRENCY"]
# Redelivery of a task whose worker died is bounded (apps.core.worker.deliveries); no
# CELERY_ prefix: it is ours, not a Celery setting.
TASK_MAX_DELIVERIES: int = ENV["CELERY_TASK_MAX_DELIVERIES"]
# A worker that lost the broker cannot ack; stop its tasks, they are redelivered.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# SIGTERM is remapped to a cold shutdown by the entrypoint (REMAP_SIGTERM=SIGQUIT);
# the soft shutdown before it lets running tasks finish for this long, then requeues.
# Celery sleeps the whole timeout whenever a task is running (it does not return
# early), so a stop with work in flight takes this long; an idle worker stops at once.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = ENV["CELERY_SOFT_SHUTDOWN_TIMEOUT"]
CELERY_WORKER_ENABLE_SOFT_SHUTDOWN_ON_IDLE = False
# Keep retrying the broker at startup (it may come up after us) and while running.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_CONNECTION_TIMEOUT = ENV["CELERY_BROKER_TIMEOUT"]
# kombu's Redis sockets wait forever by default: a Redis that accepts TCP and never
# answers would hang `.delay()` inside a request.
_celery_transport = {
    # Above the hard time limit, otherwise Redis redelivers late-acked running
    # tasks to a second worker (validated in runtime/env/).
    "visibility_timeout": ENV["CELERY_VISIBILITY_TIMEOUT"],
    "socket_timeout": ENV["CELERY_BROKER_TIMEOUT"],
    "socket_connect_timeout": ENV["CELERY_BROKER_TIMEOUT"],
    "retry_on_timeout": False,
}
if _sentinel_broker and not ENV["CELERY_BROKER_URL"]:
    _celery_transport.update(_sentinel_broker[1])
CELERY_BROKER_TRANSPORT_OPTIONS = dict(_celery_transport)
CELERY_REDIS_SOCKET_TIMEOUT = ENV["CELERY_BROKER_TIMEOUT"]
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = ENV["CELERY_BROKER_TIMEOUT"]
# Publishing retries at most once, quickly: a request must not wait long on Redis.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_WORKER_QUEUES: list[str] = ENV["CELERY_WORKER_QUEUES"]
CELERY_TASK_DEFAULT_QUEUE = CELERY_WORKER_QUEUES[0]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
# One beat schedules at a time: RedBeat holds a lock in Redis.
CELERY_BEAT_SCHEDULER = "apps.core.worker.liveness.beat:HeartbeatRedBeatScheduler"
CELERY_REDBEAT_REDIS_URL = ENV["CELERY_BROKER_URL"] or REDIS_URL
if REDIS_SENTINEL and not ENV["CELERY_BROKER_URL"]:
    CELERY_REDBEAT_REDIS_URL, CELERY_REDBEAT_REDIS_OPTIONS = redbeat_redis(
        REDIS_SENTINEL
    )
CELERY_BEAT_MAX_LOOP_INTERVAL = ENV["CELERY_BEAT_MAX_LOOP_INTERVAL"]
CELERY_REDBEAT_LOCK_TIMEOUT = ENV["CELERY_BEAT_MAX_LOOP_INTERVAL"] * 5
CELERY_REDBEAT_KEY_PREFIX = "backend:redbeat:"

HEARTBEAT_DIR: str = ENV["HEARTBEAT_DIR"]
HEARTBEAT_STALE_SECONDS: int = ENV["HEARTBEAT_STALE_SECONDS"]
HEALTH_WATCHDOG_SECONDS: int = ENV["HEALTH_WATCHDOG_SECONDS"]
RUN_MIGRATIONS: bool = ENV["RUN_MIGRATIONS"]
MIGRATION_LOCK_TIMEOUT: int = ENV["MIGRATION_LOCK_TIMEOUT"]
MIGRATION_WAIT_TIMEOUT: int = ENV["MIGRATION_WAIT_TIMEOUT"]
DEPENDENCY_WAIT_TIMEOUT: int = ENV["DEPENDENCY_WAIT_TIMEOUT"]

# --- HTTP and security ------------------------------------------------------------

if ENV["SECURE_PROXY_SSL_HEADER"]:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT: bool = ENV["SECURE_SSL_REDIRECT"]
# Probes come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = exact_path_patterns(
    [LIVENESS_PATH, READINESS_PATH, METRICS_PATH]
)
SECURE_HSTS_SECONDS: int = ENV["SECURE_HSTS_SECONDS"]
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD: bool = ENV["SECURE_HSTS_PRELOAD"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

SESSION_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS: list[str] = ENV["CSRF_TRUSTED_ORIGINS"]

CORS_ALLOWED_ORIGINS: list[str] = ENV["CORS_ALLOWED_ORIGINS"]
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-csrftoken",
    "x-request-id",
)
CORS_EXPOSE_HEADERS = ("x-request-id",)

TRUSTED_PROXY_COUNT: int = ENV["TRUSTED_PROXY_COUNT"]
AUTH_FAILURE_LIMIT: int = ENV["AUTH_FAILURE_LIMIT"]
# Password logins (the admin) are braked per account and per client IP.
AUTHENTICATION_BACKENDS = ["apps.core.http.auth_backends.BrakedModelBackend"]
LOGIN_FAILURE_LIMIT: int = ENV["LOGIN_FAILURE_LIMIT"]
LOGIN_FAILURE_LIMIT_PER_IP: int = ENV["LOGIN_FAILURE_LIMIT_PER_IP"]
LOGIN_LOCKOUT_SECONDS: int = ENV["LOGIN_LOCKOUT_SECONDS"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
RESERVATION_MAX_UNITS_PER_OWNER: int = ENV["RESERVATION_MAX_UNITS_PER_OWNER"]
RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR: int = ENV[
    "RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR"
]
AUTH_TOKEN_CACHE_SECONDS: float = ENV["AUTH_TOKEN_CACHE_SECONDS"]
DATA_UPLOAD_MAX_MEMORY_SIZE: int = ENV["MAX_REQUEST_BODY_BYTES"]
FILE_UPLOAD_MAX_MEMORY_SIZE: int = ENV["MAX_REQUEST_BODY_BYTES"]

SILENCED_SYSTEM_CHECKS: list[str] = []
if not SECURE_HSTS_PRELOAD:
    # Preloading is opt-in (SECURE_HSTS_PRELOAD): once in browsers' preload lists a
    # domain cannot serve plain HTTP for months, so it is the operator's decision.
    SILENCED_SYSTEM_CHECKS.append("security.W021")

# --- Static files -----------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- REST framework ---------------------------------------------------------------

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes unauthenticated calls a 401
    # (with the session class first, DRF answers 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.core.drf.authentication.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["apps.core.drf.parsers.SafeJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [
        "apps.core.drf.throttling.AnonRateThrottle",
        "apps.core.drf.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": ENV["API_THROTTLE_ANON"],
        "user": ENV["API_THROTTLE_USER"],
    },
    # Same trusted-proxy count as the client-IP logic; without it DRF trusts any
    # X-Forwarded-For and a client picks its own throttle bucket.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_PAGINATION_CLASS": "apps.core.drf.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.drf.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Inventory API",
    "DESCRIPTION": "Products, stock and short-lived reservations that never oversell.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.inventory.schema.add_links",
    ],
}

# --- Observability ----------------------------------------------------------------

METRICS_TOKEN: str | None = ENV["METRICS_TOKEN"]
# The token being rotated out, accepted besides METRICS_TOKEN until removed.
METRICS_TOKEN_PREVIOUS: str | None = ENV["METRICS_TOKEN_PREVIOUS"]
WORKER_METRICS_PORT: int = ENV["WORKER_METRICS_PORT"]
PROMETHEUS_EXPORT_MIGRATIONS = False

LOG_FORMAT: str = ENV["LOG_FORMAT"]
LOG_LEVEL: str = ENV["LOG_LEVEL"]
LOGGING_CONFIG = None  # configured below, once, by the project's own function

from runtime.logging import configure_logging  # noqa: E402

configure_logging(
    log_format=LOG_FORMAT,
    level=LOG_LEVEL,
    cache_error_interval=CACHE_ERROR_LOG_INTERVAL,
)

if ENV["SENTRY_DSN"]:
    from apps.core.sentry import sentry_init

    sentry_init(
        dsn=ENV["SENTRY_DSN"],
        environment=ENV["SENTRY_ENVIRONMENT"],
        release=ENV["SENTRY_RELEASE"],
        traces_sample_rate=ENV["SENTRY_TRACES_SAMPLE_RATE"],
    )
