"""A worker rides out a broker outage: healthy throughout, working again after it."""

from __future__ import annotations

import signal
import time
import uuid
from functools import partial

import pytest
import redis
from celery import Celery

from tests.support.env import with_venv_path
from tests.support.net import free_port
from tests.support.processes import healthcheck
from tests.support.redis import start_redis, stop_redis
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

# Longer than HEARTBEAT_STALE_SECONDS' default (60 s) and than a Kubernetes liveness
# budget of 3 x 20 s: a worker whose heartbeat stopped with the broker would be
# reported dead, and killed, well inside it.
OUTAGE_SECONDS = 90


def test_worker_stays_healthy_through_a_redis_outage_and_resumes(
    start_worker,
    production_env,
    queue,
    tmp_path,
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_redis(port, tmp_path)
    worker = start_worker(REDIS_URL=url)
    # The probe as a platform runs it: the container's environment (the image's
    # APP_ROLE=web), not the one the entrypoint exported to the worker.
    probe_env = with_venv_path(
        {**production_env, "HEARTBEAT_DIR": str(tmp_path), "APP_ROLE": "web"}
    )

    probe = partial(healthcheck, probe_env)
    before = probe()
    assert before.returncode == 0, before.stdout
    assert before.stdout.startswith("healthy (worker): heartbeat ")

    server.send_signal(signal.SIGKILL)
    server.wait(timeout=10)
    outage_started = time.monotonic()
    results = []
    while time.monotonic() - outage_started < OUTAGE_SECONDS:
        time.sleep(10)
        results.append(probe())
    assert worker.process.poll() is None, worker.lines
    assert [r.returncode for r in results] == [0] * len(results), [
        r.stdout for r in results
    ]
    assert any("Cannot connect to redis" in line for line in worker.lines)

    server = start_redis(port, tmp_path)
    try:
        marker = uuid.uuid4().hex
        sender = Celery(broker=url)
        sender.send_task("tests.log_line", kwargs={"marker": marker}, queue=queue)
        client = redis.Redis.from_url(url, decode_responses=True)
        wait_until(lambda: client.get(f"test:{marker}:done"), 60, "task after outage")
        after = probe()
        assert after.returncode == 0, after.stdout
    finally:
        worker.process.send_signal(signal.SIGTERM)
        worker.process.wait(timeout=60)
        stop_redis(server)
