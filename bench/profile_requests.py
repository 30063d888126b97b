"""`make bench-profile` (bench/profile_requests.py): where the time of one request goes, in process.

Sets up the benchmark database (as `make bench` does), then calls the project's WSGI
application directly (no server, no network for the request itself) with an
authenticated `GET /api/v1/products/{sku}/`, or with BENCH_PROFILE_REQUEST=reserve an
accepted `POST /api/v1/reservations/` (a fresh Idempotency-Key each, gate on), or with
BENCH_PROFILE_REQUEST=refuse a POST for a sold-out SKU that the gate refuses:
BENCH_PROFILE_REQUESTS (default 500) requests timed without a profiler, then the same
number under cProfile. Prints the mean cost per request and the top entries by own
time and by cumulative time.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import run

REQUESTS = int(os.environ.get("BENCH_PROFILE_REQUESTS", "500"))
TOP = int(os.environ.get("BENCH_PROFILE_TOP", "25"))
REQUEST = os.environ.get("BENCH_PROFILE_REQUEST", "product")


def main() -> int:
    token = run.setup()
    limits = str(run.WRITE_STOCK)
    os.environ.update(
        run.env(
            RESERVATION_MAX_UNITS_PER_OWNER=limits,
            RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR=limits,
        )
    )
    sys.path.insert(0, str(run.BACKEND))
    os.chdir(run.BACKEND)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.wsgi import application

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/api/v1/products/{run.SKU}/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Token {token}",
        "HTTP_X_FORWARDED_PROTO": "https",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    expected = "200"
    body = b""
    # A reservation POST: accepted (stock never sold out, a fresh Idempotency-Key
    # each), or refused (the hot SKU sold out: the gate refuses before any database
    # work; no key, as in `make bench`'s hot-SKU runs).
    posts = {
        "reserve": (run.WRITE_SKU, run.WRITE_STOCK, "201"),
        "refuse": (run.HOT_SKU, 0, "409"),
    }
    if REQUEST in posts:
        sku, stock, expected = posts[REQUEST]
        run.sku_reset(sku=sku, stock=stock, gate=True)
        body = json.dumps({"sku": sku, "quantity": 1}).encode()
        environ.update(
            REQUEST_METHOD="POST",
            PATH_INFO="/api/v1/reservations/",
            CONTENT_TYPE="application/json",
            CONTENT_LENGTH=str(len(body)),
        )
    statuses: list[str] = []
    sent = iter(range(10**9))

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        statuses.append(status)

    def one() -> None:
        request = {**environ, "wsgi.input": io.BytesIO(body)}
        if REQUEST == "reserve":
            request["HTTP_IDEMPOTENCY_KEY"] = f"profile-{os.getpid()}-{next(sent)}"
        response = application(request, start_response)
        b"".join(response)
        response.close()

    for _ in range(50):  # warm caches, connections and Django's lazy setup
        one()
    assert statuses[-1].startswith(expected), statuses[-1]

    started = time.perf_counter()
    for _ in range(REQUESTS):
        one()
    per_request_ms = (time.perf_counter() - started) / REQUESTS * 1000

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(REQUESTS):
        one()
    profiler.disable()
    assert all(s.startswith(expected) for s in statuses), set(statuses)

    what = {
        "reserve": "accepted POST /api/v1/reservations/",
        "refuse": "sold-out (gate-refused) POST /api/v1/reservations/",
    }.get(REQUEST, "GET /api/v1/products/{sku}/")
    print(
        f"{REQUESTS} authenticated {what} in process: "
        f"{per_request_ms:.2f} ms per request (without the profiler)\n"
    )
    print(
        f"--- own time by package, ms per request (profiled) ---\n{by_package(profiler)}\n"
    )
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(TOP)
        text = out.getvalue()
        print(f"--- top {TOP} by {order} ---")
        print(text[text.index("   ncalls") :].rstrip() + "\n")
    return 0


def by_package(profiler: cProfile.Profile) -> str:
    """Sum each function's own time by the package it lives in."""
    totals: dict[str, float] = {}
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _, name), (_, _, tottime, _, _) in stats.items():
        if "site-packages/" in filename:
            package = filename.split("site-packages/")[1].split("/")[0]
        elif "/backend/" in filename:
            package = "project: " + "/".join(
                filename.split("/backend/")[1].split("/")[:2]
            )
        elif filename == "~":
            package = "builtins: " + name.split(" of ")[-1].strip("'>{}").split(".")[0]
        else:
            package = "stdlib"
        totals[package] = totals.get(package, 0.0) + tottime
    rows = sorted(totals.items(), key=lambda item: -item[1])[:15]
    return "\n".join(f"{ms / REQUESTS * 1000:8.3f}  {name}" for name, ms in rows)


if __name__ == "__main__":
    raise SystemExit(main())
