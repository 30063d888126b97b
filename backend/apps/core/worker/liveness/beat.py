"""The beat scheduler: RedBeat (one active beat, lock in Redis) plus a heartbeat."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from redbeat.schedulers import RedBeatScheduler, acquire_distributed_beat_lock
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.core.worker.liveness.wiring import beat_ticked, heartbeat_touch

logger = logging.getLogger(__name__)

# After a tick that could not reach Redis, try again this soon.
RETRY_SECONDS = 1.0
# Redis unreachable for a moment: a Sentinel failover (seconds), a restart. A lost
# lock (LockNotOwnedError) is not among them: that beat must stop.
TRANSIENT = (RedisConnectionError, RedisTimeoutError)


class HeartbeatRedBeatScheduler(RedBeatScheduler):
    """RedBeat whose every tick refreshes the beat heartbeat file, and which rides
    out a Redis that cannot be reached for a moment."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if self.lock_key and self.lock is None:
                # RedBeat takes its lock when beat starts, in a beat_init receiver
                # whose errors Celery logs and drops: a beat started while Redis
                # was unreachable (restarted during a failover) has no lock, and
                # RedBeat's tick would end the process on it. Take it now, the way
                # RedBeat does at start (waiting while another beat holds it).
                acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=self))
            interval = super().tick(*args, **kwargs)
        except TRANSIENT as exc:
            # Celery's beat service ends the process on any error of a tick. The
            # heartbeat is not touched: an outage longer than HEARTBEAT_STALE_SECONDS
            # still gets this beat replaced by the platform.
            logger.warning("beat tick skipped, Redis unavailable: %s", exc)
            return RETRY_SECONDS
        beat_ticked.set()
        heartbeat_touch("beat")
        return interval

    def close(self) -> None:
        try:
            super().close()
        except TRANSIENT as exc:
            # Stopping while Redis is away: the lock expires on its own.
            logger.warning("beat lock not released, Redis unavailable: %s", exc)
