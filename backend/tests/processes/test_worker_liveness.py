"""A worker is healthy only while it consumes; a hung one exits; queues are measured.

Real worker processes (the entrypoint), a real private Redis behind a TCP proxy the
test can freeze, the probe run as a platform runs it.
"""

from __future__ import annotations

import json
import time
import uuid
from functools import partial

import pytest

from tests.support.env import with_venv_path
from tests.support.net import free_port
from tests.support.observability import WORKER_METRICS_TOKEN, worker_metrics
from tests.support.processes import WORKER_COMMAND, healthcheck, run_python
from tests.support.redis import start_redis, stop_redis
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

# The smallest window the registry allows, so that the tests stay short.
STALE = 10
WATCHDOG = 5


@pytest.fixture
def probe(production_env, tmp_path):
    env = with_venv_path(
        {
            **production_env,
            "HEARTBEAT_DIR": str(tmp_path),
            "APP_ROLE": "web",
            "HEARTBEAT_STALE_SECONDS": str(STALE),
        }
    )

    return partial(healthcheck, env)


def test_a_frozen_consumer_turns_unhealthy_and_the_watchdog_exits(
    start_worker,
    probe,
    tmp_path,
) -> None:
    port = free_port()
    server = start_redis(port, tmp_path)
    proxy = TcpProxy(port).start()
    try:
        worker = start_worker(
            REDIS_URL=f"redis://127.0.0.1:{proxy.listen_port}/0",
            HEARTBEAT_STALE_SECONDS=str(STALE),
            HEALTH_WATCHDOG_SECONDS=str(WATCHDOG),
        )
        wait_until(lambda: "canary from canary." in probe().stdout, 30, "a canary")
        # Canaries keep coming: healthy past one window.
        time.sleep(STALE + 2)
        healthy = probe()
        assert healthy.returncode == 0, healthy.stdout
        assert "canary from canary." in healthy.stdout
        # The process lives on; only its broker connections go silent.
        proxy.freeze()
        frozen = time.monotonic()
        unhealthy_at = None
        while worker.process.poll() is None and time.monotonic() - frozen < 60:
            result = probe()
            if result.returncode != 0 and unhealthy_at is None:
                unhealthy_at = time.monotonic()
                assert worker.process.poll() is None, "unhealthy only when it exited"
                assert "unhealthy (worker): heartbeat " in result.stdout
            time.sleep(0.5)
        exited_at = time.monotonic()
        assert worker.process.wait(timeout=5) == 70, worker.lines
        assert unhealthy_at is not None, "\n".join(worker.lines[-40:])
        print(
            f"\nfrozen -> unhealthy {unhealthy_at - frozen:.1f}s "
            f"(window {STALE}s); unhealthy -> exit {exited_at - unhealthy_at:.1f}s "
            f"(watchdog {WATCHDOG}s)"
        )
        # The window counts from the last canary, sent every STALE/4 seconds.
        assert unhealthy_at - frozen <= STALE + 3
        assert WATCHDOG - 1 <= exited_at - unhealthy_at <= WATCHDOG + 5
        assert any("exiting so that it is replaced" in line for line in worker.lines)
    finally:
        proxy.stop()
        stop_redis(server)


def test_a_task_longer_than_the_window_keeps_the_worker_healthy(
    start_worker,
    probe,
    redis_client,
    queue,
) -> None:
    from config.celery import app

    worker = start_worker(
        HEARTBEAT_STALE_SECONDS=str(STALE),
        HEALTH_WATCHDOG_SECONDS=str(WATCHDOG),
        CELERY_WORKER_CONCURRENCY="1",
    )
    wait_until(lambda: "canary from canary." in probe().stdout, 30, "a canary")
    marker = uuid.uuid4().hex
    seconds = 3 * STALE
    app.send_task(
        "tests.sleep_then_record",
        kwargs={"marker": marker, "seconds": seconds},
        queue=queue,
    )
    wait_until(lambda: redis_client.llen(f"test:{marker}:starts"), 20, "task start")
    results = []
    first_probe = time.monotonic()
    while not redis_client.llen(f"test:{marker}:finished"):
        results.append(probe())
        time.sleep(1)
    # Probed through the task's run, past the window more than once (on a loaded
    # machine each probe takes longer than its second: count the time they span,
    # not how many fit in it).
    assert time.monotonic() - first_probe >= seconds - 5
    assert len(results) >= 3
    assert [r.returncode for r in results] == [0] * len(results), [
        r.stdout for r in results if r.returncode
    ]
    assert any("busy: 1 of 1 slots running" in r.stdout for r in results)
    assert worker.process.poll() is None
    # Free again, it consumes canaries again.
    wait_until(lambda: "canary from canary." in probe().stdout, 30, "a canary")


def _queue_stats(production_env, name: str) -> dict:
    result = run_python(
        ["manage.py", "queue_stats", "--queue", name, "--json"],
        env=with_venv_path(production_env),
    )
    assert result.returncode == 0, result.stderr
    (stats,) = json.loads(result.stdout)
    return stats


def test_queue_metrics_of_a_backlog_of_10000_tasks(
    start_entrypoint,
    production_env,
    redis_client,
    queue,
) -> None:
    from config.celery import app

    total = 10_000
    marker = uuid.uuid4().hex
    first_published = time.time()
    with app.producer_or_acquire() as producer:
        for _ in range(total):
            app.send_task(
                "tests.count", kwargs={"marker": marker}, queue=queue, producer=producer
            )
    print(f"\n{total} tasks published in {time.time() - first_published:.1f}s")
    time.sleep(3)  # an age that is not ~0, to compare with the truth

    asked = time.time()
    stats = _queue_stats(production_env, queue)
    answered = time.time()
    assert stats["queue"] == queue
    assert stats["depth"] == total
    # The truth lies between the command's start and end.
    low, high = asked - first_published, answered - first_published
    error = max(low - stats["oldest_age_seconds"], stats["oldest_age_seconds"] - high)
    middle = (low + high) / 2
    print(
        f"oldest age reported {stats['oldest_age_seconds']:.2f}s, true "
        f"{low:.2f}..{high:.2f}s (while the command ran): outside that range by "
        f"{max(error, 0):.2f}s, off its middle by "
        f"{stats['oldest_age_seconds'] - middle:+.2f}s"
    )
    assert low - 2 <= stats["oldest_age_seconds"] <= high + 2
    assert stats["redelivered"] == 0
    assert stats["dead_lettered"] == 0

    port = free_port()
    drain_started = time.monotonic()
    # Two task lines per task at INFO would be most of the work here; without
    # INFO there is no "ready." line to wait for: the task count tells instead.
    start_entrypoint(
        "worker",
        *WORKER_COMMAND,
        CELERY_WORKER_QUEUES=queue,
        CELERY_WORKER_CONCURRENCY="2",
        WORKER_METRICS_PORT=str(port),
        METRICS_TOKEN=WORKER_METRICS_TOKEN,
        LOG_LEVEL="WARNING",
    )

    def runs() -> int:
        return int(redis_client.get(f"test:{marker}:runs") or 0)

    wait_until(lambda: runs() >= total, 400, "the backlog to drain")
    print(f"drained {total} tasks in {time.monotonic() - drain_started:.1f}s")

    def scrape() -> str:
        return worker_metrics(port)

    wanted = (
        f'celery_queue_messages{{queue="{queue}"}} 0.0',
        f'celery_queue_oldest_message_age_seconds{{queue="{queue}"}} 0.0',
        f'celery_queue_redelivered_total{{queue="{queue}"}} 0.0',
        f'celery_queue_dead_lettered{{queue="{queue}"}} 0.0',
    )
    wait_until(lambda: all(line in scrape() for line in wanted), 20, "metrics at 0")
    stats = _queue_stats(production_env, queue)
    assert (stats["depth"], stats["oldest_age_seconds"]) == (0, 0.0)
    time.sleep(2)
    assert runs() == total  # none lost, none run twice


def test_queue_metrics_count_every_priority_and_dead_letters(
    production_env,
    redis_client,
    queue,
    transactional_db,
) -> None:
    from apps.core.models import FailedTask
    from config.celery import app

    for priority in (0, 3, 9):
        app.send_task(
            "tests.count", kwargs={"marker": "p"}, queue=queue, priority=priority
        )
    FailedTask.objects.create(
        task_name="tests.count", task_id="x1", queue=queue, exception="E"
    )
    FailedTask.objects.create(
        task_name="tests.count", task_id="x2", queue="elsewhere", exception="E"
    )
    redis_client.hincrby("celery:redeliveries", queue, 2)
    stats = _queue_stats(production_env, queue)
    assert stats["depth"] == 3
    assert stats["dead_lettered"] == 1
    assert stats["redelivered"] == 2
