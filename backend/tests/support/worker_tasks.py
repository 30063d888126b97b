"""Tasks only the process tests load (`celery worker --include` this module).

Effects are recorded in Redis so the test process can see them; each effect is
idempotent (SET NX), and every start is counted, so a test can tell "ran twice"
from "took effect twice".
"""

from __future__ import annotations

import logging
import os
import signal
import time

import redis
from celery import shared_task
from django.conf import settings

logger = logging.getLogger("tests.support.worker_tasks")


def _redis() -> redis.Redis:
    from apps.core.redis.sentinel import redis_client

    return redis_client(settings.REDIS_URL, target=settings.REDIS_SENTINEL)


@shared_task(name="tests.sleep_then_record")
def sleep_then_record(*, marker: str, seconds: float) -> None:
    client = _redis()
    client.rpush(f"test:{marker}:starts", os.getpid())
    time.sleep(seconds)
    if client.set(f"test:{marker}:effect", "1", nx=True):
        client.incr(f"test:{marker}:effects")
    client.rpush(f"test:{marker}:finished", os.getpid())


@shared_task(name="tests.always_fails")
def always_fails(*, marker: str) -> None:
    _redis().incr(f"test:{marker}:attempts")
    raise ValueError(f"planned failure {marker}")


@shared_task(name="tests.log_line")
def log_line(*, marker: str) -> None:
    logger.info("task log line %s", marker)
    _redis().set(f"test:{marker}:done", "1")


@shared_task(name="tests.record_beat")
def record_beat(*, marker: str) -> None:
    _redis().rpush(f"test:{marker}:beats", time.time())


@shared_task(name="tests.kill_own_worker")
def kill_own_worker(*, marker: str) -> None:
    """A poison task: every delivery kills the pool process running it."""
    _redis().rpush(f"test:{marker}:starts", os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


@shared_task(name="tests.count")
def count(*, marker: str) -> None:
    """One run of one message: the backlog test counts runs against messages sent."""
    _redis().incr(f"test:{marker}:runs")


@shared_task(name="tests.record_run")
def record_run(*, marker: str, n: int, url: str) -> None:
    """Record run `n` in a Redis the test names (not the one a test may cut)."""
    redis.Redis.from_url(url).rpush(f"test:{marker}:runs", n)
