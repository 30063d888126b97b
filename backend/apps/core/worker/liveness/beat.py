"""The beat scheduler: RedBeat (one active beat, lock in Redis) plus a heartbeat."""

from __future__ import annotations

import logging
from typing import Any

from redbeat.schedulers import RedBeatScheduler
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
