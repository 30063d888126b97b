"""A beat restarted during a Redis failover takes its lock once Redis answers.

Found by the 30-minute chaos soak (seed 20261205): beat was SIGKILLed, restarted by
its supervisor while the killed beat's lock was still held, and the Redis master was
killed while it waited for that lock. RedBeat takes the lock in a beat_init receiver
whose errors Celery drops, so the beat ran on without a lock and its first tick ended
the process (`AttributeError: 'NoneType' object has no attribute 'extend'`): a crash
per failover, and on Kubernetes a back-off that keeps beat away after Redis is back.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.redis import RedisBehindProxy

pytestmark = pytest.mark.slow

# The killed predecessor's lock: held a few seconds more, as RedBeat's lock outlives
# its beat by up to five loop intervals.
PREDECESSOR_LOCK_SECONDS = 6


def test_beat_that_could_not_take_its_lock_at_start_takes_it_later(
    start_entrypoint, redis_client
) -> None:
    marker = uuid.uuid4().hex[:10]
    lock_key = f"test:{marker}:redbeat::lock"
    redis_client.set(lock_key, "killed-beat", ex=60)
    redis = RedisBehindProxy()
    beat = start_entrypoint(
        "beat",
        "celery",
        "-A",
        "tests.support.beat_app",
        "beat",
        "--pidfile=",
        REDIS_URL=redis.url,
        CELERY_BEAT_MAX_LOOP_INTERVAL="1",
        TEST_BEAT_MARKER=marker,
    )
    try:
        beat.wait_for_line(lambda line: "beat: Starting..." in line, timeout=60)
        time.sleep(2)  # waiting on the predecessor's lock, polling every second
        redis.cut()  # the master is gone: the wait for the lock fails
        beat.wait_for_line(
            lambda line: "beat tick skipped, Redis unavailable" in line, timeout=30
        )
        assert beat.process.poll() is None, beat.output()

        redis.restore()
        redis_client.expire(lock_key, PREDECESSOR_LOCK_SECONDS)
        beat.wait_for_line(lambda line: "Sending due task" in line, timeout=60)
        assert beat.process.poll() is None, beat.output()
        assert "AttributeError" not in beat.output()
        assert redis_client.get(lock_key) not in {None, b"killed-beat"}
    finally:
        redis.cut()
