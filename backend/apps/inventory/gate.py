"""The Redis admission gate: an `available` counter per SKU, taken atomically in Lua.

Redis only admits; PostgreSQL decides. A counter that is too high lets the database
refuse (and the units are given back); too low rejects early until the next
reconciliation. When Redis fails, callers go to the database alone: `GateUnavailable`.
A short circuit breaker keeps every request from paying a Redis timeout during an
outage. Every Redis command of the gate goes through `_redis`: the breaker, the
latency metric and the one way failures are reported (`GateUnavailable`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from redis.exceptions import LockError, RedisError, WatchError

from apps.inventory import metrics

logger = logging.getLogger(__name__)

KEY_PREFIX = "inventory:available:"
# After a Redis failure, skip the gate for this long (per process).
BREAKER_SECONDS = 5.0
# One reconciliation at a time, fleet-wide. The lock is a lease the run renews as it
# goes: a worker killed mid-run (OOM, SIGKILL, a node lost) frees it within
# RECONCILE_LOCK_SECONDS, so the next run, or the reconcile a Redis failover asks for,
# is not skipped for as long as the longest run could last.
RECONCILE_LOCK_KEY = "inventory:reconcile:lock"
RECONCILE_LOCK_SECONDS = 30
# Renewed every third of the lease: two renewals may come late (a slow database
# read of one SKU) before another run may take over.
RECONCILE_LOCK_RENEW_SECONDS = 10

# The Redis server (its run_id) the counters were last reconciled against. Another
# server means a failover to a replica, which may have missed the last writes, or a
# restart that lost them: reconcile now, not at the next scheduled run.
SERVER_MARK_KEY = "inventory:gate:server"

# Returns {1, remaining} when taken, {0, current} when too few, {-1, 0} when missing.
_TAKE = """
local current = redis.call('GET', KEYS[1])
if not current then return {-1, 0} end
current = tonumber(current)
local wanted = tonumber(ARGV[1])
if current < wanted then return {0, current} end
return {1, redis.call('DECRBY', KEYS[1], wanted)}
"""
# Give units back only to a counter that exists: a missing one is warmed from the
# database, which already includes them.
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return nil
"""


class GateUnavailable(Exception):
    """Redis could not be asked; use the database path."""


@dataclass(frozen=True)
class GateDecision:
    admitted: bool
    missing: bool
    counter: int


class _Breaker:
    def __init__(self) -> None:
        self._open_until = 0.0
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self) -> None:
        with self._lock:
            self._open_until = time.monotonic() + BREAKER_SECONDS

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0


breaker = _Breaker()


def gate_key(sku: str) -> str:
    return f"{KEY_PREFIX}{sku}"


def _client():
    from django_redis import get_redis_connection

    # REDIS_URL, never the cache's Redis: an evicted counter would admit oversells.
    return get_redis_connection(settings.DURABLE_REDIS_ALIAS)


def gate_enabled() -> bool:
    return bool(settings.REDIS_URL)


def _redis[T](command: Callable[[Any], T], client: Any = None) -> T:
    """Run `command(client)` (default: the gate's connection), timed, behind the
    breaker; raise GateUnavailable when Redis cannot answer.

    WatchError and LockError are answers, not outages: they pass through and leave
    the breaker closed.
    """
    if not gate_enabled():
        raise GateUnavailable("no REDIS_URL configured")
    if breaker.is_open():
        raise GateUnavailable("circuit open after a recent Redis failure")
    try:
        with metrics.gate_seconds.time():
            return command(_client() if client is None else client)
    except (WatchError, LockError):
        raise
    except RedisError as exc:
        breaker.trip()
        logger.warning("inventory gate unavailable: %s", exc)
        raise GateUnavailable(str(exc)) from exc


def _script(script: str, key: str, *args: object) -> Any:
    return _redis(lambda redis: redis.eval(script, 1, key, *args))


def gate_take(*, sku: str, quantity: int) -> GateDecision:
    """Try to take `quantity` units from the SKU's counter."""
    key = gate_key(sku)
    # Sold-out traffic is most of a hot SKU's traffic: one plain GET refuses it
    # (a script costs Redis its own command plus each command it runs). The script
    # below still decides every admission atomically.
    current = _redis(lambda redis: redis.get(key))
    if current is not None and int(current) < quantity:
        return GateDecision(admitted=False, missing=False, counter=int(current))
    status, value = _script(_TAKE, key, quantity)
    return GateDecision(admitted=status == 1, missing=status == -1, counter=int(value))


def gate_give_back(*, sku: str, quantity: int) -> None:
    """Return units to the counter (a failed reservation, a cancel, an expiry)."""
    try:
        _script(_GIVE_BACK, gate_key(sku), quantity)
    except GateUnavailable:
        # The reconciliation restores the counter from the database.
        logger.info("gate give-back skipped for %s (Redis unavailable)", sku)


def gate_warm(*, sku: str, available: int) -> None:
    """Create a missing counter from the database's figure (never overwrite one)."""
    # Unavailable: the database decides meanwhile, and a later request warms it.
    with suppress(GateUnavailable):
        _redis(lambda redis: redis.set(gate_key(sku), available, nx=True))


def gate_forget(*, skus: list[str]) -> int:
    """Delete the SKUs' counters; return how many existed.

    An inactive product must have no counter: the gate would otherwise refuse a
    reservation with its `available` before the database says it does not exist.
    Without a counter the request takes the database path, which answers 404.
    """
    if not skus:
        return 0
    try:
        return int(_redis(lambda redis: redis.delete(*map(gate_key, skus))))
    except GateUnavailable:
        # The reconciliation removes it once Redis is back.
        logger.info(
            "gate counters not removed for %d SKU(s) (Redis unavailable)", len(skus)
        )
        return 0


def gate_counters_clear(*, batch_size: int = 500) -> int:
    """Delete every SKU's counter and the reconciled-server mark; return how many
    counters there were.

    After a database restore the counters describe a later (or another) state:
    a product created after the backup keeps a counter, units sold after it are
    missing from one. Without a counter a request warms it from the database, so
    clearing is safe under traffic; SCAN, not KEYS, keeps Redis answering.
    """

    def clear(redis: Any) -> int:
        removed = 0
        batch: list[bytes] = []
        for key in redis.scan_iter(match=f"{KEY_PREFIX}*", count=batch_size):
            batch.append(key)
            if len(batch) >= batch_size:
                removed += int(redis.delete(*batch))
                batch = []
        if batch:
            removed += int(redis.delete(*batch))
        redis.delete(SERVER_MARK_KEY)
        return removed

    return _redis(clear)


def gate_read(*, sku: str) -> int | None:
    """Return the counter, or None when it is missing."""
    value = _redis(lambda redis: redis.get(gate_key(sku)))
    return None if value is None else int(value)


@dataclass(frozen=True)
class GateRepair:
    redis_value: int | None
    database_value: int
    repaired: bool


def gate_repair(*, sku: str, database_available: Callable[[], int]) -> GateRepair:
    """Set the counter to the database's figure unless traffic touched it meanwhile.

    The counter is read (and WATCHed) first, the database second. Traffic moves
    the counter before the database when it takes units (the reservation commits
    later) and after it when it gives units back (a commit, then the give-back).
    So a database change the counter does not show yet is a take already counted
    or a give-back still to come: writing the database's figure can only leave the
    counter too high, which the database refuses safely. Any take, give-back or
    warm-up between our read and our write, even one that restores the same
    value, makes Redis drop the write (WATCH): the next run repairs it instead.
    """
    key = gate_key(sku)

    def watch_and_read(pipe: Any) -> bytes | None:
        pipe.watch(key)
        return pipe.get(key)

    def write(pipe: Any) -> None:
        pipe.multi()
        pipe.set(key, in_db)
        pipe.execute()

    # The database read runs between two Redis calls, outside the gate's timing.
    with _client().pipeline() as pipe:
        raw = _redis(watch_and_read, pipe)
        in_redis = None if raw is None else int(raw)
        in_db = database_available()
        if in_redis == in_db:
            return GateRepair(in_redis, in_db, repaired=False)
        try:
            _redis(write, pipe)
        except WatchError:
            return GateRepair(in_redis, in_db, repaired=False)
    return GateRepair(in_redis, in_db, repaired=True)


class ReconcileLeaseLost(Exception):
    """This run's reconciliation lease lapsed and another run may hold it now."""


class ReconcileLease:
    """The reconciliation lock held by this run, renewed while the run goes on."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self._renew_every = RECONCILE_LOCK_RENEW_SECONDS
        self._renewed_at = time.monotonic()

    def keep(self) -> None:
        """Renew the lease once RECONCILE_LOCK_RENEW_SECONDS have passed since the
        last time.

        Raises ReconcileLeaseLost when the lock is no longer this run's (it lapsed and
        another run may have taken it: this one must stop), GateUnavailable when Redis
        cannot be asked.
        """
        now = time.monotonic()
        if now - self._renewed_at < self._renew_every:
            return
        try:
            _redis(lambda lock: lock.reacquire(), self._lock)
        except LockError as exc:
            raise ReconcileLeaseLost(str(exc)) from exc
        self._renewed_at = now


@contextmanager
def gate_reconcile_lock() -> Iterator[ReconcileLease | None]:
    """Hold the fleet-wide reconciliation lock if free: yield its lease, or None when
    another run holds it.

    Raises GateUnavailable when Redis cannot be asked.
    """
    lock = _client().lock(
        RECONCILE_LOCK_KEY, timeout=RECONCILE_LOCK_SECONDS, blocking=False
    )
    held = _redis(lambda lock: lock.acquire(), lock)
    try:
        yield ReconcileLease(lock) if held else None
    finally:
        if held:
            try:
                _redis(lambda lock: lock.release(), lock)
            except (LockError, GateUnavailable):
                logger.warning("reconciliation lock expired before release")


def gate_record_fallback() -> None:
    metrics.gate_fallbacks.inc()


def gate_server_changed() -> tuple[bool, str]:
    """Is the Redis serving the gate another than the one last reconciled against?

    Return the answer and the server's run_id (which is new after a restart too).
    """

    def read(redis: Any) -> tuple[bool, str]:
        run_id = str(redis.info("server")["run_id"])
        marked = redis.get(SERVER_MARK_KEY)
        return (marked is None or marked.decode() != run_id), run_id

    return _redis(read)


def gate_server_mark(*, run_id: str) -> None:
    """Record that the counters agree with the database on server `run_id`."""
    _redis(lambda redis: redis.set(SERVER_MARK_KEY, run_id))
