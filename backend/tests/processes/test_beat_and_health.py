"""Beat runs once per period even when started twice; healthcheck per role."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from pathlib import Path

import pytest

from tests.support.env import clean_environ
from tests.support.net import free_port
from tests.support.processes import WORKER_COMMAND, run_python
from tests.support.processes import healthcheck as run_healthcheck
from tests.support.redis import RedisBehindProxy
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def start_beat(start_entrypoint, marker: str, tmp: Path):
    return start_entrypoint(
        "beat",
        "celery",
        "-A",
        "tests.support.beat_app",
        "beat",
        "--schedule",
        str(tmp / f"schedule-{uuid.uuid4().hex}"),
        "--pidfile=",
        TEST_BEAT_MARKER=marker,
    )


def test_two_beats_schedule_each_period_once(
    start_entrypoint, redis_client, tmp_path
) -> None:
    marker = uuid.uuid4().hex[:10]
    start_entrypoint(
        "worker",
        *WORKER_COMMAND,
        CELERY_WORKER_QUEUES=f"test-{marker}",
    ).wait_for_line(lambda line: "ready." in line, timeout=60)
    first = start_beat(start_entrypoint, marker, tmp_path)
    second = start_beat(start_entrypoint, marker, tmp_path)
    wait_until(lambda: redis_client.llen(f"test:{marker}:beats") >= 1, 60, "first run")
    started = time.monotonic()
    time.sleep(12)
    runs = [float(t) for t in redis_client.lrange(f"test:{marker}:beats", 0, -1)]
    assert first.process.poll() is None
    assert second.process.poll() is None
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    # A 2-second schedule over ~12 s: about 6 runs, never two in the same period.
    assert 5 <= len(runs) <= 9, runs
    assert min(gaps) > 1.0, gaps
    assert time.monotonic() - started >= 12


def healthcheck(**env: str):
    return run_healthcheck(clean_environ(DEBUG="true", **env))


def test_healthcheck_web(start_gunicorn) -> None:
    server = start_gunicorn()
    port = server.base_url.rsplit(":", 1)[1]
    healthy = healthcheck(APP_ROLE="web", PORT=port)
    assert healthy.returncode == 0
    assert (
        healthy.stdout == f"healthy (web): GET http://127.0.0.1:{port}/health/ -> 200\n"
    )
    dead = healthcheck(APP_ROLE="web", PORT=str(free_port()))
    assert dead.returncode == 1
    assert dead.stdout.startswith("unhealthy (web): GET http://127.0.0.1:")
    assert "Connection refused" in dead.stdout


def _make_stale(path: Path) -> None:
    old = time.time() - 120
    os.utime(path, (old, old))


def test_healthcheck_worker(start_entrypoint, tmp_path) -> None:
    missing = healthcheck(APP_ROLE="worker", HEARTBEAT_DIR=str(tmp_path))
    assert missing.returncode == 1
    assert missing.stdout.startswith("unhealthy (worker): no heartbeat file")
    start_entrypoint("worker", CELERY_WORKER_QUEUES=f"test-{uuid.uuid4().hex}")
    heartbeat = tmp_path / "celery-worker.heartbeat"
    wait_until(heartbeat.exists, 60, "worker heartbeat")
    healthy = healthcheck(APP_ROLE="worker", HEARTBEAT_DIR=str(tmp_path))
    assert healthy.returncode == 0, healthy.stdout
    assert healthy.stdout.startswith("healthy (worker): heartbeat ")
    _make_stale(heartbeat)
    stale = healthcheck(APP_ROLE="worker", HEARTBEAT_DIR=str(tmp_path))
    assert stale.returncode == 1
    assert "s old (limit 60s)" in stale.stdout


def test_healthcheck_beat(start_entrypoint, tmp_path) -> None:
    marker = uuid.uuid4().hex[:10]
    start_beat(start_entrypoint, marker, tmp_path)
    heartbeat = tmp_path / "celery-beat.heartbeat"
    wait_until(heartbeat.exists, 60, "beat heartbeat")
    healthy = healthcheck(APP_ROLE="beat", HEARTBEAT_DIR=str(tmp_path))
    assert healthy.returncode == 0, healthy.stdout
    _make_stale(heartbeat)
    stale = healthcheck(APP_ROLE="beat", HEARTBEAT_DIR=str(tmp_path))
    assert stale.returncode == 1
    # The beat refreshes it on its next tick (max loop interval 5 s).
    wait_until(
        lambda: time.time() - heartbeat.stat().st_mtime < 10, 15, "beat tick refresh"
    )
    again = healthcheck(APP_ROLE="beat", HEARTBEAT_DIR=str(tmp_path))
    assert again.returncode == 0


def test_healthcheck_migrate_is_always_healthy(tmp_path) -> None:
    result = healthcheck(APP_ROLE="migrate", HEARTBEAT_DIR=str(tmp_path))
    assert result.returncode == 0
    assert (
        result.stdout == "healthy (migrate): migrate role has no long-running process\n"
    )


def test_beat_rides_out_a_redis_that_is_briefly_gone(
    start_entrypoint, redis_client
) -> None:
    """As during a Sentinel failover: Redis cannot be reached for a few seconds, then
    answers again with its data. Beat neither exits nor needs a restart (before, a
    tick's ConnectionError ended the process, and with it the canaries that keep
    the workers alive)."""
    redis = RedisBehindProxy()
    beat = start_entrypoint(
        "beat", REDIS_URL=redis.url, CELERY_BEAT_MAX_LOOP_INTERVAL="1"
    )
    try:
        beat.wait_for_line(lambda line: "Sending due task" in line, timeout=60)
        redis.cut()
        beat.wait_for_line(lambda line: "beat tick skipped, Redis unavailable" in line)
        time.sleep(2)
        assert beat.process.poll() is None, beat.output()
        skipped = beat.output().count("beat tick skipped")
        redis.restore()
        time.sleep(3)
        # Ticking again: no more skips, and still the one beat process.
        assert beat.output().count("beat tick skipped") <= skipped + 1
        assert beat.process.poll() is None, beat.output()
    finally:
        redis.cut()


def test_healthcheck_old_command_runs_the_probe(tmp_path) -> None:
    """`python -m apps.core.healthcheck`, the command of task definitions written
    before the probe moved to runtime/, answers as the new one does (one release)."""
    heartbeat = tmp_path / "celery-worker.heartbeat"
    heartbeat.write_text(f"{time.time():.0f} consumed")
    env = clean_environ(DEBUG="true", APP_ROLE="worker", HEARTBEAT_DIR=str(tmp_path))
    for state, returncode in (("healthy", 0), ("unhealthy", 1)):
        old = run_python(["-m", "apps.core.healthcheck"], env=env)
        new = run_healthcheck(env)
        assert (old.returncode, new.returncode) == (returncode, returncode), old
        assert old.stdout.startswith(f"{state} (worker): heartbeat "), old.stdout
        assert old.stdout.split(" is ")[0] == new.stdout.split(" is ")[0]
        _make_stale(heartbeat)
