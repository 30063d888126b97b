"""Fixed-window request counters shared through Redis, added to in batches.

A throttle that sent one INCRBY per request spent about a fifth of an authenticated
read in that round trip (bench/README.md). Each process therefore counts its own
requests and adds them to the shared counter every `batch_size(limit)` requests,
at once when the window is close to its limit, and at least once a second. The
shared counter stays exact; what a process does not see yet is the other
processes' unsent counts, so a window can admit up to
(processes - 1) x (batch_size - 1) requests above its limit. Limits below 200 per
window have a batch of 1: every request is counted in Redis as it arrives, exactly.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from apps.core.redis.cache import CACHE_LOGGER

# Rate-limited (CACHE_ERROR_LOG_INTERVAL): an outage logs once per interval.
logger = logging.getLogger(CACHE_LOGGER)

# A batch is at most 1% of the limit, and never more than this many requests.
MAX_BATCH = 32
# A process's unsent count is sent at least this often (seconds), so that a process
# serving a trickle of requests does not hide them from the others for long.
MAX_UNSENT_SECONDS = 1.0
# Windows kept per process before the expired ones are dropped.
MAX_WINDOWS = 10_000


def batch_size(limit: int) -> int:
    """How many requests a process counts before adding them to the shared count."""
    return max(1, min(MAX_BATCH, limit // 100))


@dataclass
class _Share:
    """This process's view of one window."""

    shared: int = 0  # the shared count after this process's last addition
    unsent: int = 0  # counted here, not yet added to the shared count
    sent_at: float = float("-inf")  # window clock of the last addition
    ends_at: float = 0.0


class WindowCounters:
    """The counters of one process. Thread-safe (gthread workers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shares: dict[str, _Share] = {}

    def admit(self, *, key: str, limit: int, now: float, window_end: float) -> bool:
        """Count one request under `key` (naming its window); True if within `limit`.

        `now` and `window_end` are the throttle's clock. With Redis down the count is
        unknown and the request is admitted: a cache outage must not lock everybody out.
        """
        with self._lock:
            share = self._shares.get(key)
            if share is None:
                if len(self._shares) >= MAX_WINDOWS:
                    self._drop_ended(now)
                share = self._shares[key] = _Share(ends_at=window_end)
            share.unsent += 1
            estimate = share.shared + share.unsent
            batch = batch_size(limit)
            if (
                share.unsent < batch
                and estimate + batch <= limit
                and now - share.sent_at < MAX_UNSENT_SECONDS
            ):
                return True
            # Sent under the lock: threads of this process wait for one round trip
            # instead of each sending its own.
            count = _window_add(
                key=key, amount=share.unsent, seconds=int(window_end - now) + 2
            )
            share.unsent = 0
            share.sent_at = now
            if count is None:
                return True
            share.shared = count
            return count <= limit

    def _drop_ended(self, now: float) -> None:
        for key in [k for k, s in self._shares.items() if s.ends_at <= now]:
            del self._shares[key]
        if len(self._shares) >= MAX_WINDOWS:  # all current: forget the oldest half
            for key in list(self._shares)[: MAX_WINDOWS // 2]:
                del self._shares[key]


def _window_add(*, key: str, amount: int, seconds: int) -> int | None:
    """Add `amount` to the shared counter `key`; return the new count (None: unknown).

    One Redis command (INCRBY); only the first addition of a window also sets the
    expiry, so `key` must name its window: if that EXPIRE is lost with a killed
    process, the key outlives its window but is never read again.
    """
    # The cache's Redis (REDIS_CACHE_URL): a lost counter only admits a few more.
    if not settings.REDIS_CACHE_URL:  # embedded development cache (no Redis)
        if cache.add(key, amount, seconds):
            return amount
        try:
            return cache.incr(key, amount)
        except ValueError:  # expired between add and incr
            cache.add(key, amount, seconds)
            return amount
    from django_redis import get_redis_connection
    from redis.exceptions import RedisError

    redis_key = cache.make_key(key)
    try:
        client = get_redis_connection("default")
        count = client.incrby(redis_key, amount)
        if count == amount:
            client.expire(redis_key, seconds)
    except RedisError as exc:
        logger.warning("window counter unavailable: %s", exc, exc_info=exc)
        return None
    return count


# One set per process: gunicorn forks its workers before any request is counted.
window_counters = WindowCounters()
