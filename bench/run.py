"""`make bench`: the project's figures beside fixed baselines, measured in one run.

1. /health/ req/s: project vs a bare Django view (no middleware), same gunicorn config.
2. GET /api/v1/products/{sku}/ req/s: project (DRF, token auth, ORM) vs a raw cursor.
3. Both under GUNICORN_WORKER_CLASS=uvicorn (ASGI), with error counts.
4. Hot SKU: stock 1,000, 64 buyers attempting reservations of 1 for BENCH_HOT_SECONDS
   (15): with the Redis gate and with the database path alone.
5. Cold start: entrypoint start to /health/ 200, dependencies up.
6. Product detail through PgBouncer (transaction pooling, DB_POOL_MODE=transaction)
   vs the same server connected directly: what the pooler's hop costs.
7. The write path: POST /api/v1/reservations/ (token auth, Idempotency-Key, gate on,
   every attempt accepted) vs a bare view running the same SQL transaction and the
   same Lua take by hand (bench/bare_views.py).

Every figure is the median of BENCH_RUNS runs (default 3); a ratio is taken pair by
pair inside each run, and the median of those per-run ratios is reported (not the
ratio of the two medians). Loopback only; wrk (Debian) for all load, with a Lua script for
the reservations.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
import redis

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "backend"
# The tests' helpers (free ports, waiting, process groups) and the app's own modules.
sys.path.insert(0, str(BACKEND))

from tests.support.http import wait_http  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.processes import popen, stop_group  # noqa: E402
from tests.support.servers import pgbouncer_binary, start_pgbouncer  # noqa: E402

BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
DURATION = int(os.environ.get("BENCH_DURATION", "5"))
CONCURRENCY = 32
# Overridable so that two checkouts on one machine do not share a benchmark database.
DB_NAME = os.environ.get("BENCH_DB_NAME", "bench_inventory")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
SKU = "BENCH-1"
HOT_SKU = "HOT-1"
HOT_STOCK = 1000
HOT_CLIENTS = 64
HOT_SECONDS = int(os.environ.get("BENCH_HOT_SECONDS", "15"))
WRITE_SKU = "WRITE-1"
# Never sold out during the write-path runs: every attempt is an accepted reservation.
WRITE_STOCK = 10_000_000
# Comma-separated result keys to measure (e.g. "product_gthread,hot_sku"); a partial
# run prints its figures and leaves bench/results.json alone.
ONLY = {k for k in os.environ.get("BENCH_ONLY", "").split(",") if k}


def selected(*keys: str) -> bool:
    return not ONLY or any(key in ONLY for key in keys)


BASE_ENV = {
    "DJANGO_SECRET_KEY": "bench-" + "k" * 60,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CORS_ALLOWED_ORIGINS": "https://app.example.com",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    "REDIS_URL": REDIS_URL,
    "BENCH_DB_NAME": DB_NAME,
    # The benchmark measures the request path, not the rate limiter.
    "API_THROTTLE_USER": "100000000/minute",
    "WORKER_METRICS_PORT": "0",
    "PYTHONPATH": str(ROOT),
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def env(**overrides: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "METRICS_TOKEN"}}
    return {**clean, **BASE_ENV, **overrides, "PATH": f"{BIN}:{os.environ['PATH']}"}


def wait_healthy(port: int, timeout: float = 60) -> None:
    """Wait for /health/ 200, polling often: the cold start is timed to it."""
    url = f"http://127.0.0.1:{port}/health/"
    wait_http(url, timeout, status=200, interval=0.02)


def setup() -> str:
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{DB_NAME}"')
    admin.close()
    redis.Redis.from_url(REDIS_URL).flushdb()
    subprocess.run(
        [str(BIN / "python"), "manage.py", "migrate", "-v0"],
        cwd=BACKEND,
        env=env(),
        check=True,
    )
    script = (
        "from django.contrib.auth import get_user_model;"
        "from rest_framework.authtoken.models import Token;"
        "from apps.inventory import services;"
        "u = get_user_model().objects.create_user('bench', password='x', is_staff=True);"
        f"services.product_create(sku='{SKU}', name='Bench');"
        f"services.stock_restock(sku='{SKU}', quantity=100, actor=u);"
        f"services.product_create(sku='{HOT_SKU}', name='Hot');"
        f"services.product_create(sku='{WRITE_SKU}', name='Write');"
        "print(Token.objects.create(user=u).key)"
    )
    return django_shell(script)


def django_shell(script: str) -> str:
    """Run `script` with `manage.py shell` against the benchmark database; return
    the last line it printed."""
    out = subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", script],
        cwd=BACKEND,
        env=env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


class Server:
    def __init__(
        self, app: str | None = None, plain: bool = False, **overrides: str
    ) -> None:
        self.port = free_port()
        if plain:  # gunicorn's own defaults, no config file: the reference server
            argv = [str(BIN / "gunicorn"), "-w", "2", "--threads", "4"]
            argv += ["-b", f"127.0.0.1:{self.port}", app]
        else:
            argv = [str(BIN / "gunicorn"), "-c", "config/gunicorn_conf.py"]
            if app:
                argv.append(app)
        self.process = popen(
            argv,
            env=env(PORT=str(self.port), **overrides),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_healthy(self.port)

    def stop(self) -> None:
        stop_group(self.process)


def wrk(port: int, path: str, headers: dict[str, str]) -> dict[str, float]:
    args = ["wrk", "-t2", f"-c{CONCURRENCY}", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    url = f"http://127.0.0.1:{port}{path}"
    subprocess.run([*args, "-d2s", url], capture_output=True, check=True)  # warm-up
    out = subprocess.run(
        [*args, f"-d{DURATION}s", url], capture_output=True, text=True, check=True
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0),
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
    }


def wrk_script_answers(out: str) -> tuple[dict[int, int], int, dict[str, float]]:
    """Read a STATUS_COUNTS_LUA run: answers by status, socket errors, and req/s
    with the p50 and p99 latencies."""
    statuses = {int(code): int(n) for code, n in re.findall(r"status (\d+) (\d+)", out)}
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    timing = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
    }
    errors = sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    return statuses, errors, timing


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def median_of(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def pair(
    name: str,
    project: Server,
    baseline: Server,
    path: str,
    headers: dict,
    measure: Callable[[int], dict[str, float]] | None = None,
) -> dict:
    """Measure both servers RUNS times, in turn; the ratio is taken per run.

    `measure(port)` replaces the GET of `path` with `headers` (wrk's defaults).
    """
    measure = measure or (lambda port: wrk(port, path, headers))
    runs = []
    for _ in range(RUNS):
        ours = measure(project.port)
        base = measure(baseline.port)
        runs.append(
            {"project": ours, "baseline": base, "ratio": ours["rps"] / base["rps"]}
        )
    result = {
        "project": median_of([r["project"] for r in runs]),
        "baseline": median_of([r["baseline"] for r in runs]),
        "ratio": statistics.median(r["ratio"] for r in runs),
    }
    log(
        f"{name}: project {result['project']['rps']:.0f} req/s, baseline "
        f"{result['baseline']['rps']:.0f} req/s, ratio {result['ratio']:.2f}"
    )
    return result


def pooled_vs_direct(auth: dict[str, str]) -> dict:
    """Product detail through PgBouncer (transaction mode) vs directly, one run."""
    binary = pgbouncer_binary()
    if binary is None:
        raise SystemExit("pgbouncer is missing: apt-get install pgbouncer")
    directory = Path(tempfile.mkdtemp(prefix="bench-pgbouncer-"))
    # A pool as large as the web container's threads: the hop is measured, not
    # queueing for a server connection.
    bouncer, port = start_pgbouncer(binary, directory, postgres_port=5432, pool_size=20)
    pooled_env = {
        "DB_POOL_MODE": "transaction",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/{DB_NAME}",
        "DATABASE_DIRECT_URL": BASE_ENV["DATABASE_URL"],
    }
    servers: list[Server] = []
    try:
        # As a pooled deployment's migrate role does: the statement_timeout becomes
        # the role's, so both servers run with it.
        subprocess.run(
            [str(BIN / "python"), "manage.py", "migrate_locked"],
            cwd=BACKEND,
            env=env(**pooled_env),
            check=True,
            capture_output=True,
        )
        pooled = Server(GUNICORN_WORKER_CLASS="gthread", **pooled_env)
        servers.append(pooled)
        direct = Server(GUNICORN_WORKER_CLASS="gthread")
        servers.append(direct)
        return pair(
            "product, PgBouncer vs direct",
            pooled,
            direct,
            f"/api/v1/products/{SKU}/",
            auth,
        )
    finally:
        for server in servers:
            server.stop()
        bouncer.terminate()
        bouncer.wait(timeout=15)
        shutil.rmtree(directory, ignore_errors=True)


def sku_reset(*, sku: str, stock: int, gate: bool) -> None:
    """Empty a SKU's reservations and ledger, set its stock to `stock` with nothing
    reserved, and its gate counter to the same (or none, for the database path):
    every measurement starts from the same rows."""
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DB_NAME)
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT id FROM inventory_product WHERE sku = %s", [sku])
        (product_id,) = cursor.fetchone()
        cursor.execute(
            "DELETE FROM inventory_stockmovement WHERE product_id = %s", [product_id]
        )
        cursor.execute(
            "DELETE FROM inventory_reservation WHERE product_id = %s", [product_id]
        )
        cursor.execute(
            "UPDATE inventory_stock SET on_hand = %s, reserved = 0 WHERE product_id = %s",
            [stock, product_id],
        )
    conn.close()
    # The gate's own key format. Imported where used: the bench process configures
    # no Django, and only this step needs the app's code.
    from apps.inventory.gate import gate_key

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(gate_key(sku))
    if gate:
        client.set(gate_key(sku), stock)


def hot_buyers() -> list[str]:
    """One account per client, as at a launch: many buyers, one SKU.

    With a single account every attempt also queued on that owner's unit-limit lock,
    so the benchmark measured one buyer's serialization, not the SKU's.
    """
    script = (
        "from django.contrib.auth import get_user_model;"
        "from rest_framework.authtoken.models import Token;"
        "User = get_user_model();"
        f"users = [User.objects.create_user(f'buyer{{n}}') for n in range({HOT_CLIENTS})];"
        "print(' '.join(Token.objects.create(user=u).key for u in users))"
    )
    return django_shell(script).split()


# wrk's Lua hooks shared by the reservation scripts: every thread counts its answers
# by status, and done() prints the counts of all threads (thread:get reads a
# thread's globals). Each script defines `threads`, `counts` and its own request().
STATUS_COUNTS_LUA = """
function response(status)
  counts[status] = (counts[status] or 0) + 1
end

function done()
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
  end
  for status, n in pairs(total) do io.write(string.format("status %%d %%d\\n", status, n)) end
end
"""

# Each request a buyer's attempt (tokens in turn).
HOT_SKU_LUA = """
local tokens = {%(tokens)s}
local threads = {}
local next_token = 0
counts = {}

function setup(thread)
  table.insert(threads, thread)
end

function request()
  next_token = next_token %% #tokens + 1
  return wrk.format("POST", nil, {
    ["Authorization"] = "Token " .. tokens[next_token],
    ["Content-Type"] = "application/json",
    ["X-Forwarded-Proto"] = "https",
  }, '%(body)s')
end
"""


def hot_sku_run(port: int, tokens: list[str], *, stock: int) -> dict[str, float]:
    """HOT_CLIENTS keep-alive clients attempting reservations for HOT_SECONDS (wrk)
    of a SKU that had `stock` units.

    wrk, not Python: an asyncio client in Python capped the gate's refusals at
    ~400-600/s on two cores, where wrk measured 650-980/s, so the benchmark measured
    its own load generator.
    """
    threads = 2
    script = Path(tempfile.mkdtemp(prefix="bench-")) / "hot_sku.lua"
    script.write_text(
        (HOT_SKU_LUA + STATUS_COUNTS_LUA)
        % {
            "tokens": ", ".join(f'"{token}"' for token in tokens),
            "body": json.dumps({"sku": HOT_SKU, "quantity": 1}),
        }
    )
    load = subprocess.Popen(
        [
            "wrk",
            f"-t{threads}",
            f"-c{HOT_CLIENTS}",
            f"-d{HOT_SECONDS}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/api/v1/reservations/",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(HOT_SECONDS / 2)
    split = connections_per_worker(port)
    out, _ = load.communicate(timeout=HOT_SECONDS + 60)
    if load.returncode:
        raise RuntimeError(f"wrk exited {load.returncode}: {out}")
    statuses, socket_errors, timing = wrk_script_answers(out)
    # wrk stops at its deadline with requests in flight; the server still answers
    # them. Let them finish before reading the stock, and before the next run's
    # reset (run after a reset, they were accepted without being counted).
    time.sleep(3)
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DB_NAME)
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT s.on_hand, s.reserved FROM inventory_stock s JOIN inventory_product p "
            "ON p.id = s.product_id WHERE p.sku = %s",
            [HOT_SKU],
        )
        on_hand, reserved = cursor.fetchone()
    conn.close()
    accepted = statuses.get(201, 0)
    return {
        "accepted": accepted,
        "rejected": statuses.get(409, 0),
        "errors": sum(c for s, c in statuses.items() if s not in {201, 409})
        + socket_errors,
        "oversold": max(0, reserved - on_hand) + max(0, accepted - stock),
        "attempts_per_s": timing["rps"],
        "p50_ms": timing["p50_ms"],
        "p99_ms": timing["p99_ms"],
        # The keep-alive connections the busiest gunicorn worker held mid-run: the
        # kernel hands each new connection to whichever worker accepts first, and a
        # connection stays with it (bench/README.md, "The refusal path's tail").
        "busiest_worker_connections": split[0] if split else 0,
    }


def connections_per_worker(port: int) -> list[int]:
    """Established connections to the server's port, counted per process, most first."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    held: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        held[pid] = held.get(pid, 0) + 1
    split = sorted(held.values(), reverse=True)
    log(f"connections per worker mid-run: {split}")
    return split


def hot_sku(tokens: list[str]) -> dict:
    """A launch: HOT_STOCK units sold to HOT_CLIENTS buyers with the gate and by the
    database alone; then the same buyers at a sold-out SKU, where every attempt is the
    gate's refusal (the path a launch's crowd takes once the units are gone)."""
    results = {}
    for label, gate, stock in (
        ("gate", True, HOT_STOCK),
        ("database_only", False, HOT_STOCK),
        ("sold_out", True, 0),
    ):
        # The database path alone: no REDIS_URL (the gate is off), the broker kept
        # through CELERY_BROKER_URL (web refuses to start without one).
        overrides = {} if gate else {"REDIS_URL": "", "CELERY_BROKER_URL": REDIS_URL}
        server = Server(**overrides)
        try:
            runs = []
            for _ in range(RUNS):
                sku_reset(sku=HOT_SKU, stock=stock, gate=gate)
                runs.append(hot_sku_run(server.port, tokens, stock=stock))
        finally:
            server.stop()
        results[label] = median_of(runs)
        log(f"hot SKU ({label}): {results[label]}")
    results["gate_speedup"] = (
        results["gate"]["attempts_per_s"] / results["database_only"]["attempts_per_s"]
    )
    return results


# wrk's Lua hooks for the write path: buyers' tokens in turn, a fresh Idempotency-Key
# per request (run nonce, thread, counter).
RESERVE_LUA = """
local tokens = {%(tokens)s}
local threads = {}
local counter = 0
counts = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function request()
  counter = counter + 1
  return wrk.format("POST", nil, {
    ["Authorization"] = "Token " .. tokens[(counter + id) %% #tokens + 1],
    ["Content-Type"] = "application/json",
    ["X-Forwarded-Proto"] = "https",
    ["Idempotency-Key"] = string.format("%(nonce)s-%%d-%%d", id, counter),
  }, '%(body)s')
end
"""


def wrk_reservations(port: int, tokens: list[str]) -> dict[str, float]:
    """CONCURRENCY clients POSTing reservations for DURATION s, after a warm-up."""
    body = json.dumps({"sku": WRITE_SKU, "quantity": 1, "ttl_seconds": 900})
    url = f"http://127.0.0.1:{port}/api/v1/reservations/"
    out = ""
    for seconds in (2, DURATION):  # warm-up, then the measurement
        sku_reset(sku=WRITE_SKU, stock=WRITE_STOCK, gate=True)
        script = Path(tempfile.mkdtemp(prefix="bench-")) / "reserve.lua"
        script.write_text(
            (RESERVE_LUA + STATUS_COUNTS_LUA)
            % {
                "tokens": ", ".join(f'"{token}"' for token in tokens),
                "nonce": os.urandom(6).hex(),
                "body": body,
            }
        )
        out = subprocess.run(
            [
                *("wrk", "-t2", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency"),
                *("-s", str(script), url),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
        time.sleep(1)  # requests in flight at wrk's stop finish before the reset
    statuses, socket_errors, timing = wrk_script_answers(out)
    return {
        **timing,
        "errors": sum(c for s, c in statuses.items() if s != 201) + socket_errors,
    }


def write_path(tokens: list[str]) -> dict:
    """Reservation POST: the project vs the same transaction by hand, same tokens."""
    limits = {
        "RESERVATION_MAX_UNITS_PER_OWNER": str(WRITE_STOCK),
        "RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR": str(WRITE_STOCK),
    }
    project = Server(GUNICORN_WORKER_CLASS="gthread", **limits)
    baseline = Server("bench.bare_wsgi:application", GUNICORN_WORKER_CLASS="gthread")
    try:
        return pair(
            "reservation POST",
            project,
            baseline,
            "/api/v1/reservations/",
            {},
            measure=lambda port: wrk_reservations(port, tokens),
        )
    finally:
        project.stop()
        baseline.stop()


def cold_start() -> dict[str, float]:
    samples = []
    for _ in range(RUNS):
        port = free_port()
        started = time.monotonic()
        process = popen(
            [str(BACKEND / "scripts" / "entrypoint.sh"), "web"],
            env=env(PORT=str(port)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_healthy(port, timeout=120)
        samples.append(time.monotonic() - started)
        stop_group(process)
    result = {"seconds": statistics.median(samples), "samples": samples}
    log(f"cold start: {result['seconds']:.2f} s")
    return result


def main() -> int:
    token = setup()
    auth = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    results: dict = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "runs": RUNS,
            "duration_s": DURATION,
            "concurrency": CONCURRENCY,
            "hot_sku_s": HOT_SECONDS,
        },
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for worker_class, bare_app in (
        ("gthread", "bench.bare_wsgi:application"),
        ("uvicorn", "bench.bare_asgi:application"),
    ):
        if not selected(f"health_{worker_class}", f"product_{worker_class}"):
            continue
        project = Server(GUNICORN_WORKER_CLASS=worker_class)
        baseline = Server(bare_app, GUNICORN_WORKER_CLASS=worker_class)
        try:
            if selected(f"health_{worker_class}"):
                results[f"health_{worker_class}"] = pair(
                    f"/health/ {worker_class}",
                    project,
                    baseline,
                    "/health/",
                    {"X-Forwarded-Proto": "https"},
                )
            if selected(f"product_{worker_class}"):
                results[f"product_{worker_class}"] = pair(
                    f"product {worker_class}",
                    project,
                    baseline,
                    f"/api/v1/products/{SKU}/",
                    auth,
                )
        finally:
            project.stop()
            baseline.stop()
    if selected("gunicorn_config"):
        # The shipped gunicorn configuration (JSON access log, 2 x CPUs + 1 workers,
        # hooks) against plain `gunicorn -w 2 --threads 4`, both on the bare view.
        shipped = Server("bench.bare_wsgi:application")
        plain = Server("bench.bare_wsgi:application", plain=True)
        try:
            results["gunicorn_config"] = pair(
                "gunicorn config (bare view)",
                shipped,
                plain,
                "/health/",
                {"X-Forwarded-Proto": "https"},
            )
        finally:
            shipped.stop()
            plain.stop()
    if selected("product_pgbouncer"):
        results["product_pgbouncer"] = pooled_vs_direct(auth)
    buyers = hot_buyers() if selected("hot_sku", "reserve_gthread") else []
    if selected("reserve_gthread"):
        results["reserve_gthread"] = write_path(buyers)
    if selected("hot_sku"):
        results["hot_sku"] = hot_sku(buyers)
    if selected("cold_start"):
        results["cold_start"] = cold_start()
    if ONLY:  # a partial run: print it, keep the recorded full run
        print(json.dumps(results, indent=2))
        return 0
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


def table(r: dict) -> str:
    rows = [
        "| Measurement | Project | Baseline | Ratio (median of per-run ratios) "
        "| Errors (project/baseline) |",
        "|---|---|---|---|---|",
    ]
    for key, label in (
        ("health_gthread", "/health/ req/s, gthread"),
        ("product_gthread", "product detail req/s, gthread"),
        ("health_uvicorn", "/health/ req/s, uvicorn (ASGI)"),
        ("product_uvicorn", "product detail req/s, uvicorn (ASGI)"),
        (
            "gunicorn_config",
            "bare view: shipped gunicorn config vs plain `-w 2 --threads 4`",
        ),
        ("product_pgbouncer", "product detail req/s: through PgBouncer vs direct"),
        ("reserve_gthread", "reservation POST req/s (accepted, key, gate)"),
    ):
        x = r[key]
        rows.append(
            f"| {label} | {x['project']['rps']:.0f} (p99 {x['project']['p99_ms']:.1f} ms) "
            f"| {x['baseline']['rps']:.0f} (p99 {x['baseline']['p99_ms']:.1f} ms) "
            f"| {x['ratio']:.2f} | {x['project']['errors']:.0f}/{x['baseline']['errors']:.0f} |"
        )
    rows.append(
        f"| gthread over uvicorn, product detail | "
        f"{r['product_gthread']['project']['rps'] / r['product_uvicorn']['project']['rps']:.1f}x | | | |"
    )
    rows += [
        "",
        "| Hot SKU (stock 1,000, 64 buyers, "
        f"{HOT_SECONDS} s) | accepted | rejected | oversold | errors "
        "| attempts/s | p50 ms | p99 ms | busiest worker's connections |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label in ("gate", "database_only", "sold_out"):
        if label not in r["hot_sku"]:  # results recorded before the sold-out run
            continue
        h = r["hot_sku"][label]
        rows.append(
            f"| {label.replace('_', ' ')} | {h['accepted']:.0f} | {h['rejected']:.0f} "
            f"| {h['oversold']:.0f} | {h['errors']:.0f} | {h['attempts_per_s']:.0f} "
            f"| {h['p50_ms']:.1f} | {h['p99_ms']:.1f} "
            f"| {h.get('busiest_worker_connections', float('nan')):.0f} |"
        )
    rows.append(
        f"| gate speed-up | {r['hot_sku']['gate_speedup']:.2f}x | | | | | | | |"
    )
    if "sold_out" in r["hot_sku"]:
        # A closed loop of HOT_CLIENTS clients: Little's law gives the mean latency.
        sold_out = r["hot_sku"]["sold_out"]
        little_ms = HOT_CLIENTS / sold_out["attempts_per_s"] * 1000
        rows.append(
            "| sold out: p99 / Little's-law mean "
            f"| {sold_out['p99_ms'] / little_ms:.2f}x | | | | | | | |"
        )
    rows += [
        "",
        f"Cold start (entrypoint to /health/ 200): {r['cold_start']['seconds']:.2f} s "
        f"(median of {len(r['cold_start']['samples'])})",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
