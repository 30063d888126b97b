"""The answers to the probes: liveness (/health/, always ok) and readiness (checks).

Readiness runs each check in a small thread pool with a deadline, so the probe answers
within READY_DEADLINE_SECONDS even when PostgreSQL or Redis accept connections and then
hang: a probe that hangs is read by the platform as a dead task. The public answer says
ok/failed per check; why a check failed goes to the log only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.http import HttpRequest, JsonResponse

from runtime.draining import drain_active

logger = logging.getLogger(__name__)

READY_DEADLINE_SECONDS = 1.5
# Per-query cap on the database check, below the deadline.
DB_CHECK_STATEMENT_TIMEOUT_MS = 1000

# A result is reused this long, per process (see _fresh_results).
READY_REUSE_SECONDS = 1.0

_executor = ThreadPoolExecutor(max_workers=6, thread_name_prefix="readiness")
_migrations_verified = threading.Event()
_results_lock = threading.Lock()
_last_results: tuple[float, dict[str, dict[str, Any]]] | None = None
# Replaceable in tests, which step time instead of sleeping.
_clock = time.monotonic


def liveness(request: HttpRequest) -> JsonResponse:
    """Report that the process serves requests; no I/O."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    try:
        connection = connections["default"]
        # is_local: the timeout ends with this transaction, so a pooler never
        # hands this probe's short timeout to another client's session.
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    [str(DB_CHECK_STATEMENT_TIMEOUT_MS)],
                )
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # Checks run in pool threads: never leave a connection behind in them.
        connections.close_all()


def _check_migrations() -> None:
    # Once every migration of this code is applied it stays so for this process:
    # skip loading the migration graph on every probe.
    if _migrations_verified.is_set():
        return
    from django.db.migrations.executor import MigrationExecutor

    try:
        connection = connections["default"]
        executor = MigrationExecutor(connection)
        targets = executor.loader.graph.leaf_nodes()
        plan = executor.migration_plan(targets)
    finally:
        connections.close_all()
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        raise RuntimeError(f"{len(plan)} unapplied migration(s): {names}")
    _migrations_verified.set()


def _check_redis() -> None:
    from django_redis import get_redis_connection

    # The gate's Redis (REDIS_URL): the cache's degrades nothing but speed.
    get_redis_connection(settings.DURABLE_REDIS_ALIAS).ping()


def _run_checks(checks: dict[str, Callable[[], None]]) -> dict[str, dict[str, Any]]:
    started = time.monotonic()
    futures = {name: _executor.submit(_timed, check) for name, check in checks.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        remaining = max(0.0, READY_DEADLINE_SECONDS - (time.monotonic() - started))
        try:
            results[name] = future.result(timeout=remaining)
        except FutureTimeout:
            results[name] = {
                "ok": False,
                "latency_ms": round(READY_DEADLINE_SECONDS * 1000),
                "error": f"timed out after {READY_DEADLINE_SECONDS}s",
            }
    return results


def _timed(check: Callable[[], None]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - any failure is a failed check
        error: str | None = f"{type(exc).__name__}: {exc}".strip()[:300]
    else:
        error = None
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    return {"ok": error is None, "latency_ms": latency_ms, "error": error}


def _fresh_results(checks: dict[str, Callable[[], None]]) -> dict[str, dict[str, Any]]:
    """Run the checks, or return the ones run less than READY_REUSE_SECONDS ago.

    Probes arrive from every load balancer, orchestrator and curious client; a flood
    of them costs one round of checks per second per process. The lock makes
    concurrent probes wait for the round in flight rather than start their own.
    """
    global _last_results
    with _results_lock:
        if _last_results is not None:
            checked_at, results = _last_results
            if 0 <= _clock() - checked_at < READY_REUSE_SECONDS:
                return results
        results = _run_checks(checks)
        _last_results = (_clock(), results)
    failed = {name: r for name, r in results.items() if not r["ok"]}
    if failed:
        # Details (hosts, users, migration names) are for operators, not the public.
        logger.warning("readiness checks failed", extra={"failed_checks": failed})
    return results


def readiness(request: HttpRequest) -> JsonResponse:
    """Report whether this instance should receive traffic."""
    if drain_active():
        # Stopping: the balancer must route elsewhere now, whatever the checks say.
        from apps.core.http.metrics import readiness_checks

        readiness_checks.labels(status="draining").inc()
        return JsonResponse({"status": "draining", "checks": {}}, status=503)
    checks: dict[str, Callable[[], None]] = {
        "database": _check_database,
        "migrations": _check_migrations,
    }
    if settings.REDIS_URL:
        checks["redis"] = _check_redis
    results = _fresh_results(checks)
    if not (results["database"]["ok"] and results["migrations"]["ok"]):
        status, http_status = "unavailable", 503
    elif not all(result["ok"] for result in results.values()):
        # Redis down: reservations fall back to the database path, so keep serving.
        status, http_status = "degraded", 200
    else:
        status, http_status = "ok", 200
    from apps.core.http.metrics import readiness_checks

    readiness_checks.labels(status=status).inc()
    public = {name: "ok" if r["ok"] else "failed" for name, r in results.items()}
    return JsonResponse({"status": status, "checks": public}, status=http_status)
