"""Worker and beat liveness, one story in three modules.

- watchdog.py: the mechanics, without Celery: heartbeat files, the canary that
  proves consuming, the busy and reconnecting cases, and the watchdog thread that
  exits a process whose heartbeat went stale.
- wiring.py: the same mechanics connected to Celery's worker and beat (a consumer
  bootstep, signals, beat's canary entries).
- beat.py: beat's scheduler, whose every tick is beat's heartbeat.

The container probe that reads the heartbeat files is runtime/healthcheck.py; the
canary task itself is `core.canary` in apps/core/tasks.py.
"""
