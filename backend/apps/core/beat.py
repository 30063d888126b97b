"""The beat scheduler: RedBeat (one active beat, lock in Redis) plus a heartbeat."""

from __future__ import annotations

from typing import Any

from redbeat.schedulers import RedBeatScheduler

from apps.core.heartbeats import beat_ticked, heartbeat_touch


class HeartbeatRedBeatScheduler(RedBeatScheduler):
    """RedBeat whose every tick refreshes the beat heartbeat file."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = super().tick(*args, **kwargs)
        beat_ticked.set()
        heartbeat_touch("beat")
        return interval
