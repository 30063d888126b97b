"""Every environment variable the project reads, declared once: the data.

Python and the entrypoint script read the environment only through this registry
(runtime/env/loader.py parses and checks it, runtime/env/schema.py says how); the
docs and `.env.example` are generated from it (`make docs`). Declarations are ordered
by group, one heading per group, in the order the docs list the groups.
"""

from __future__ import annotations

from runtime.env.schema import (
    POSTGRES_PARTS,
    Kind,
    Var,
    check_admin_url,
    check_hosts,
    check_origins,
    check_secret_key,
    check_secret_keys,
    check_sentinels,
    check_throttle_rate,
)

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


VARIABLES: tuple[Var, ...] = (
    # --- Core ---
    Var(
        "DEBUG",
        Kind.BOOL,
        "core",
        "Development mode: embedded defaults, verbose errors. "
        "Never true in production.",
        default=False,
        example="false",
    ),
    Var(
        "DJANGO_SECRET_KEY",
        Kind.SECRET,
        "core",
        "Django's signing key; at least 50 random characters.",
        required_in_prod=True,
        check=check_secret_key,
        debug_default="dev-insecure-key-only-for-local-development-never-in-production-0",
        sensitive=True,
    ),
    Var(
        "DJANGO_SECRET_KEY_FALLBACKS",
        Kind.LIST,
        "core",
        "Previous signing keys (comma separated) while DJANGO_SECRET_KEY is "
        "rotated. Sessions, password-reset links and signed values made with them "
        "still verify; nothing new is signed with them. Remove them once the "
        "rotation window (SESSION_COOKIE_AGE, two weeks) is over.",
        default=[],
        check=check_secret_keys,
        sensitive=True,
    ),
    Var(
        "ALLOWED_HOSTS",
        Kind.LIST,
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
        Kind.STR,
        "core",
        "Path of the Django admin, ending in '/'.",
        default="admin/",
        check=check_admin_url,
    ),
    # --- Database ---
    Var(
        "DATABASE_URL",
        Kind.URL,
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
        Kind.STR,
        "database",
        "Database user, when DATABASE_URL is not set.",
        example="app",
    ),
    Var(
        "POSTGRES_PASSWORD",
        Kind.SECRET,
        "database",
        "Database password, when DATABASE_URL is not set.",
        example="app",
        sensitive=True,
    ),
    Var(
        "POSTGRES_DB",
        Kind.STR,
        "database",
        "Database name, when DATABASE_URL is not set.",
        example="app",
    ),
    Var(
        "POSTGRES_HOST",
        Kind.STR,
        "database",
        "Database host, when DATABASE_URL is not set.",
        default="localhost",
        example="db",
    ),
    Var(
        "POSTGRES_PORT",
        Kind.INT,
        "database",
        "Database port, when DATABASE_URL is not set.",
        default=5432,
        minimum=1,
        maximum=65535,
    ),
    Var(
        "DB_POOL_MODE",
        Kind.CHOICE,
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
        Kind.URL,
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
        Kind.INT,
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
        Kind.INT,
        "database",
        "With DB_POOL_MODE=transaction: the client connections the pooler accepts "
        "(PgBouncer's max_client_conn, times pooler replicas); the replicas' own "
        "connections must fit in it.",
        default=1000,
        minimum=1,
    ),
    Var(
        "DB_CONN_MAX_AGE",
        Kind.INT,
        "database",
        "Seconds a database connection is reused (forced to 0 under the ASGI worker).",
        default=600,
        minimum=0,
    ),
    Var(
        "DB_EXPECTED_REPLICAS",
        Kind.INT,
        "database",
        "Containers of this role expected at once (replicas, plus the surge of a "
        "rolling deploy); the start-up connection budget multiplies by it.",
        default=2,
        minimum=1,
        maximum=1000,
    ),
    Var(
        "DB_RESERVED_CONNECTIONS",
        Kind.INT,
        "database",
        "PostgreSQL connections the connection budget keeps free for the other "
        "roles, migrations, administrators and superuser_reserved_connections.",
        default=10,
        minimum=0,
    ),
    Var(
        "DB_CONNECT_TIMEOUT",
        Kind.INT,
        "database",
        "Seconds to wait for a database connection before failing.",
        default=5,
        minimum=1,
        maximum=60,
    ),
    Var(
        "DB_STATEMENT_TIMEOUT_MS",
        Kind.INT,
        "database",
        "Server-side statement_timeout in milliseconds; 0 disables it.",
        default=30000,
        minimum=0,
    ),
    # --- Redis and Celery ---
    Var(
        "REDIS_URL",
        Kind.URL,
        "redis",
        "Redis that must never evict (maxmemory-policy noeviction): Celery broker, "
        "RedBeat's lock, the inventory gate counters and their reconciliation lock, "
        "task delivery counts, token revocation messages; also the cache unless "
        "REDIS_CACHE_URL is set. No task results: tasks record their outcome in "
        "PostgreSQL. Required in production "
        "for the web, worker and beat roles (unless CELERY_BROKER_URL names the "
        "broker); with DEBUG and without it: in-memory cache and eager Celery.",
        schemes=("redis", "rediss"),
        example="redis://redis:6379/0",
        sensitive=True,
    ),
    Var(
        "REDIS_SENTINELS",
        Kind.LIST,
        "redis",
        "Redis Sentinel addresses (host:port, comma-separated). Set, every Redis "
        "client follows the master they name, also across a failover, and "
        "REDIS_URL names that master by its Sentinel name instead of a host: "
        "redis://:password@mymaster/0.",
        default=[],
        example="sentinel-1:26379,sentinel-2:26379,sentinel-3:26379",
        check=lambda value: check_sentinels(value),
    ),
    Var(
        "REDIS_SENTINEL_PASSWORD",
        Kind.SECRET,
        "redis",
        "Password of the sentinels themselves (their requirepass), when they have one.",
        sensitive=True,
    ),
    Var(
        "REDIS_CACHE_URL",
        Kind.URL,
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
        Kind.URL,
        "redis",
        "Celery broker, when it differs from REDIS_URL.",
        schemes=("redis", "rediss", "amqp", "amqps"),
        sensitive=True,
    ),
    Var(
        "REDIS_SOCKET_TIMEOUT",
        Kind.FLOAT,
        "redis",
        "Seconds to wait for a Redis connect or reply before treating Redis as down.",
        default=1.0,
        minimum=0.05,
        maximum=30,
    ),
    Var(
        "CACHE_ERROR_LOG_INTERVAL",
        Kind.INT,
        "redis",
        "Seconds between two log lines about the same cache (Redis) failure.",
        default=60,
        minimum=1,
    ),
    # --- HTTP and security ---
    Var(
        "CORS_ALLOWED_ORIGINS",
        Kind.LIST,
        "http",
        "Browser origins allowed to call the API (comma separated, explicit).",
        required_in_prod=True,
        check=check_origins,
        debug_default=["http://localhost:3000"],
        example="http://localhost:3000",
    ),
    Var(
        "CSRF_TRUSTED_ORIGINS",
        Kind.LIST,
        "http",
        "Origins trusted for unsafe requests with session auth (comma separated).",
        default=[],
        check=check_origins,
    ),
    Var(
        "SECURE_PROXY_SSL_HEADER",
        Kind.BOOL,
        "http",
        "Trust X-Forwarded-Proto: https from "
        "the proxy in front (turn off when nothing sets that header).",
        default=True,
        debug_default=False,
    ),
    Var(
        "SECURE_SSL_REDIRECT",
        Kind.BOOL,
        "http",
        "Redirect plain HTTP to HTTPS (health paths are exempt).",
        default=True,
        debug_default=False,
    ),
    Var(
        "SECURE_HSTS_SECONDS",
        Kind.INT,
        "http",
        "Strict-Transport-Security max-age; 0 turns HSTS off.",
        default=31536000,
        debug_default=0,
        minimum=0,
    ),
    Var(
        "SECURE_HSTS_PRELOAD",
        Kind.BOOL,
        "http",
        "Ask browsers to preload HSTS (hard to undo: opt in knowingly).",
        default=False,
    ),
    Var(
        "TRUSTED_PROXY_COUNT",
        Kind.INT,
        "http",
        "How many proxies in front append to "
        "X-Forwarded-For; the client IP is the right-most hop they did not add.",
        default=0,
        minimum=0,
        maximum=10,
    ),
    Var(
        "MAX_REQUEST_BODY_BYTES",
        Kind.INT,
        "http",
        "Largest request body accepted; larger bodies get 413.",
        default=1048576,
        minimum=1024,
    ),
    Var(
        "API_THROTTLE_ANON",
        Kind.STR,
        "http",
        "Request rate for anonymous clients, per client IP.",
        default="60/minute",
        check=check_throttle_rate,
    ),
    Var(
        "AUTH_FAILURE_LIMIT",
        Kind.INT,
        "http",
        "Failed token authentications allowed per client IP per minute; more get 429.",
        default=20,
        minimum=1,
    ),
    Var(
        "LOGIN_FAILURE_LIMIT",
        Kind.INT,
        "http",
        "Failed password logins (the admin) allowed per account within "
        "LOGIN_LOCKOUT_SECONDS of the first; then the account is refused, right "
        "password included, until that window ends (the admin answers 429).",
        default=5,
        minimum=1,
    ),
    Var(
        "LOGIN_FAILURE_LIMIT_PER_IP",
        Kind.INT,
        "http",
        "Failed password logins allowed per client IP, over all accounts, within "
        "LOGIN_LOCKOUT_SECONDS of the first; then that address is refused.",
        default=20,
        minimum=1,
    ),
    Var(
        "LOGIN_LOCKOUT_SECONDS",
        Kind.INT,
        "http",
        "Window of the failed-login counters, from the first failure: how long a "
        "locked-out account or address waits at most.",
        default=900,
        minimum=1,
    ),
    Var(
        "AUTH_TOKEN_CACHE_SECONDS",
        Kind.FLOAT,
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
        Kind.STR,
        "http",
        "Request rate per authenticated user. Each web process adds its count to "
        "Redis every 1% of the rate (at most 32 requests, at least once a second): "
        "a window may admit up to (web processes - 1) x 31 requests more. Rates "
        "below 200 per period are counted exactly.",
        default="6000/minute",
        check=check_throttle_rate,
    ),
    # --- Gunicorn (web role) ---
    Var(
        "PORT",
        Kind.INT,
        "gunicorn",
        "Port the web role listens on (Railway injects it).",
        default=5000,
        minimum=1,
        maximum=65535,
    ),
    Var(
        "GUNICORN_WORKERS",
        Kind.INT,
        "gunicorn",
        "Worker processes; default 2 x usable "
        "CPUs + 1 (affinity and cgroup quota), capped by GUNICORN_MAX_WORKERS.",
        minimum=1,
        maximum=256,
    ),
    Var(
        "GUNICORN_MAX_WORKERS",
        Kind.INT,
        "gunicorn",
        "Upper bound on the computed worker count.",
        default=12,
        minimum=1,
        maximum=256,
    ),
    Var(
        "GUNICORN_WORKER_CLASS",
        Kind.CHOICE,
        "gunicorn",
        "gthread (WSGI, default) or uvicorn (ASGI; forces DB_CONN_MAX_AGE=0).",
        default="gthread",
        choices=("gthread", "uvicorn"),
    ),
    Var(
        "GUNICORN_THREADS",
        Kind.INT,
        "gunicorn",
        "Threads per gthread worker.",
        default=4,
        minimum=1,
        maximum=64,
    ),
    Var(
        "GUNICORN_TIMEOUT",
        Kind.INT,
        "gunicorn",
        "Seconds a request may run before its worker is killed.",
        default=120,
        minimum=1,
    ),
    Var(
        "GUNICORN_GRACEFUL_TIMEOUT",
        Kind.INT,
        "gunicorn",
        "Seconds workers get to finish requests after SIGTERM.",
        default=30,
        minimum=1,
    ),
    Var(
        "WEB_DRAIN_SECONDS",
        Kind.INT,
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
        Kind.INT,
        "gunicorn",
        "Seconds an idle keep-alive connection "
        "stays open (above load balancer idle timeouts).",
        default=75,
        minimum=0,
    ),
    Var(
        "GUNICORN_MAX_REQUESTS",
        Kind.INT,
        "gunicorn",
        "Requests after which a worker is recycled; 0 turns recycling off.",
        default=10000,
        minimum=0,
    ),
    Var(
        "GUNICORN_MAX_REQUESTS_JITTER",
        Kind.INT,
        "gunicorn",
        "Random extra requests so workers do not recycle together.",
        default=1000,
        minimum=0,
    ),
    Var(
        "FORWARDED_ALLOW_IPS",
        Kind.STR,
        "gunicorn",
        "Proxy addresses gunicorn trusts for "
        "X-Forwarded-* headers ('*' when only the load balancer can reach the app).",
        default="127.0.0.1",
    ),
    # --- Observability ---
    Var(
        "LOG_FORMAT",
        Kind.CHOICE,
        "observability",
        "json (one object per line) or console.",
        default="json",
        debug_default="console",
        choices=("json", "console"),
    ),
    Var(
        "LOG_LEVEL",
        Kind.CHOICE,
        "observability",
        "Minimum level logged.",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    ),
    Var(
        "METRICS_TOKEN",
        Kind.SECRET,
        "observability",
        "Bearer token for /metrics; without it /metrics answers 404.",
        sensitive=True,
    ),
    Var(
        "METRICS_TOKEN_PREVIOUS",
        Kind.SECRET,
        "observability",
        "The metrics token being rotated out: web's /metrics and the worker's port "
        "accept it besides METRICS_TOKEN until it is removed, so Prometheus can "
        "switch tokens without a scrape gap.",
        sensitive=True,
    ),
    Var(
        "PROMETHEUS_MULTIPROC_DIR",
        Kind.STR,
        "observability",
        "Directory where web and worker processes share metrics; the entrypoint sets "
        "and empties it (under HEARTBEAT_DIR).",
    ),
    Var(
        "WORKER_METRICS_PORT",
        Kind.INT,
        "observability",
        "Port of the worker's own /metrics (Celery task outcomes and durations); 0 "
        "turns it off.",
        default=9808,
        minimum=0,
        maximum=65535,
    ),
    Var(
        "SENTRY_DSN",
        Kind.SECRET,
        "observability",
        "Sentry DSN; Sentry is off without it.",
        sensitive=True,
    ),
    Var(
        "SENTRY_ENVIRONMENT",
        Kind.STR,
        "observability",
        "Environment name reported to Sentry.",
        default="production",
    ),
    Var(
        "SENTRY_RELEASE",
        Kind.STR,
        "observability",
        "Release reported to Sentry (image tag or commit).",
    ),
    Var(
        "SENTRY_TRACES_SAMPLE_RATE",
        Kind.FLOAT,
        "observability",
        "Share of requests traced by Sentry.",
        default=0.0,
        minimum=0.0,
        maximum=1.0,
    ),
    # --- Entrypoint and processes ---
    Var(
        "APP_ROLE",
        Kind.CHOICE,
        "process",
        "Which process the image runs.",
        default="web",
        choices=("web", "worker", "beat", "migrate"),
    ),
    Var(
        "DEPENDENCY_WAIT_TIMEOUT",
        Kind.INT,
        "process",
        "Seconds the entrypoint waits for PostgreSQL and Redis before giving up.",
        default=60,
        minimum=0,
    ),
    Var(
        "RUN_MIGRATIONS",
        Kind.BOOL,
        "process",
        "Let the web role apply migrations at start (under the migration lock); the "
        "migrate role always does.",
        default=False,
    ),
    Var(
        "MIGRATION_LOCK_TIMEOUT",
        Kind.INT,
        "process",
        "Seconds a starting replica waits for another one's migration lock.",
        default=300,
        minimum=1,
    ),
    Var(
        "MIGRATION_WAIT_TIMEOUT",
        Kind.INT,
        "process",
        "Seconds worker and beat wait for pending migrations to be applied.",
        default=300,
        minimum=0,
    ),
    Var(
        "HEARTBEAT_DIR",
        Kind.STR,
        "process",
        "Writable directory for worker and beat heartbeat files (the healthcheck reads "
        "them).",
        default="/tmp",
    ),
    Var(
        "HEARTBEAT_STALE_SECONDS",
        Kind.INT,
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
        Kind.INT,
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
        Kind.INT,
        "process",
        "Task processes per worker container.",
        default=2,
        minimum=1,
        maximum=64,
    ),
    Var(
        "CELERY_WORKER_QUEUES",
        Kind.LIST,
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
        Kind.INT,
        "process",
        "Hard time limit of a task in seconds (the process is killed); must be "
        "above CELERY_TASK_SOFT_TIME_LIMIT and below CELERY_VISIBILITY_TIMEOUT.",
        default=180,
        minimum=1,
    ),
    Var(
        "CELERY_TASK_SOFT_TIME_LIMIT",
        Kind.INT,
        "process",
        "Soft time limit in seconds (the task gets an exception to clean up); must "
        "be below CELERY_TASK_TIME_LIMIT.",
        default=120,
        minimum=1,
    ),
    Var(
        "CELERY_VISIBILITY_TIMEOUT",
        Kind.INT,
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
        Kind.INT,
        "process",
        "Tasks after which a pool process is replaced (bounds leaks).",
        default=100,
        minimum=1,
    ),
    Var(
        "CELERY_TASK_MAX_DELIVERIES",
        Kind.INT,
        "process",
        "Deliveries of one task (per retry) before it is recorded as failed instead "
        "of run again: bounds a task that kills its worker each time.",
        default=5,
        minimum=1,
        maximum=100,
    ),
    Var(
        "CELERY_SOFT_SHUTDOWN_TIMEOUT",
        Kind.FLOAT,
        "process",
        "Seconds running tasks get after SIGTERM before they are requeued; keep it "
        "inside the platform's stop grace period.",
        default=20.0,
        minimum=0,
    ),
    Var(
        "CELERY_BROKER_TIMEOUT",
        Kind.FLOAT,
        "process",
        "Seconds to connect to or hear from the broker before an enqueue fails.",
        default=2.0,
        minimum=0.1,
        maximum=60,
    ),
    Var(
        "CELERY_BEAT_MAX_LOOP_INTERVAL",
        Kind.INT,
        "process",
        "Longest sleep of the beat scheduler in seconds (its heartbeat period).",
        default=5,
        minimum=1,
        maximum=60,
    ),
    # --- Inventory ---
    Var(
        "RESERVATION_MAX_UNITS_PER_OWNER",
        Kind.INT,
        "inventory",
        "Units one account may hold in active reservations at once; a reservation "
        "above it is 409 reservation_limit_exceeded.",
        default=1000,
        minimum=1,
    ),
    Var(
        "RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR",
        Kind.INT,
        "inventory",
        "Units one account may reserve within any hour, whatever became of the "
        "reservations (confirmed, cancelled, expired); above it is 409 "
        "reservation_rate_exceeded.",
        default=3000,
        minimum=1,
    ),
)

REGISTRY: dict[str, Var] = {var.name: var for var in VARIABLES}
