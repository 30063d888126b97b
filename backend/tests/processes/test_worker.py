"""The worker role: stopping without losing work, failures recorded, request ids."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from apps.core.worker.liveness.watchdog import CANARY_TASK
from tests.support.net import free_port
from tests.support.observability import WORKER_METRICS_TOKEN, worker_metrics
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def send(queue: str):
    from config.celery import app

    def send(name: str, **kwargs: object) -> str:
        return app.send_task(name, kwargs=kwargs, queue=queue).id

    return send


def wait_for_start(redis_client, marker: str) -> None:
    """Wait until tests.sleep_then_record with this marker has started."""
    wait_until(lambda: redis_client.llen(f"test:{marker}:starts"), 20, "task start")


def sigterm_once_started(worker, redis_client, marker: str) -> tuple[int, float]:
    """SIGTERM the worker once the task started; return its exit status and how
    long it took to stop."""
    wait_for_start(redis_client, marker)
    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    status = worker.process.wait(timeout=30)
    return status, time.monotonic() - signalled


def assert_ran_again_with_one_effect(
    redis_client, marker: str, timeout: float, what: str
) -> None:
    """Wait for the second run to finish: two starts, one effect."""
    wait_until(lambda: redis_client.llen(f"test:{marker}:finished"), timeout, what)
    assert redis_client.llen(f"test:{marker}:starts") == 2
    assert redis_client.get(f"test:{marker}:effects") == "1"


def test_sigterm_lets_the_running_task_finish(start_worker, send, redis_client) -> None:
    marker = uuid.uuid4().hex
    worker = start_worker(CELERY_SOFT_SHUTDOWN_TIMEOUT="6")
    send("tests.sleep_then_record", marker=marker, seconds=3)
    status, stopped_after = sigterm_once_started(worker, redis_client, marker)
    assert status == 0, worker.lines
    assert redis_client.llen(f"test:{marker}:finished") == 1
    assert redis_client.get(f"test:{marker}:effects") == "1"
    # Celery waits out the soft-shutdown timeout whenever a task was running.
    assert 6 <= stopped_after < 12


def test_idle_worker_stops_at_once(start_worker) -> None:
    # Canaries every 150 s (a quarter of the stale window), not every 15 s: on a
    # loaded machine the next one could be running at the signal (seen in CI).
    worker = start_worker(
        CELERY_SOFT_SHUTDOWN_TIMEOUT="20", HEARTBEAT_STALE_SECONDS="600"
    )
    # A worker sends itself a liveness canary as it starts
    # (apps/core/worker/liveness/wiring.py).
    # Celery's soft shutdown sleeps its whole timeout when any task is active at the
    # signal, so the stop is timed once that canary has run: idle means idle.
    worker.wait_for_line(
        lambda line: CANARY_TASK in line and "succeeded" in line, timeout=30
    )
    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=30) == 0
    assert time.monotonic() - signalled < 5


def test_task_longer_than_soft_shutdown_is_requeued_and_completed(
    start_worker, send, redis_client
) -> None:
    marker = uuid.uuid4().hex
    first = start_worker(CELERY_SOFT_SHUTDOWN_TIMEOUT="2")
    send("tests.sleep_then_record", marker=marker, seconds=8)
    _, stopped_after = sigterm_once_started(first, redis_client, marker)
    assert stopped_after < 10
    assert redis_client.llen(f"test:{marker}:finished") == 0
    # The next worker gets it at once, not after the visibility timeout (5 minutes).
    start_worker()
    assert_ran_again_with_one_effect(redis_client, marker, 40, "rerun")


def test_sigkill_of_the_pool_child_requeues_at_once(
    start_worker, send, redis_client
) -> None:
    marker = uuid.uuid4().hex
    start_worker()
    send("tests.sleep_then_record", marker=marker, seconds=3)
    wait_for_start(redis_client, marker)
    child_pid = int(redis_client.lindex(f"test:{marker}:starts", 0))
    os.kill(child_pid, signal.SIGKILL)
    # task_reject_on_worker_lost: the same worker's new child runs it again now.
    assert_ran_again_with_one_effect(redis_client, marker, 30, "rerun")


def test_sigkill_of_the_whole_worker_redelivers_after_visibility_timeout(
    start_worker, send, redis_client, queue
) -> None:
    """Not before the visibility timeout, though another worker consumes the queue
    all along; after it, a worker that starts (a replacement container) runs it."""
    marker = uuid.uuid4().hex
    visibility = 6
    short = {
        "CELERY_TASK_TIME_LIMIT": "5",
        "CELERY_TASK_SOFT_TIME_LIMIT": "4",
        "CELERY_VISIBILITY_TIMEOUT": str(visibility),
    }
    # Two workers on the queue, idle and ready before the task is sent; names of
    # their own, so that each one's canaries go to its own queue.
    workers = [start_worker("-n", f"{name}-{marker[:8]}@%h", **short) for name in "ab"]
    task_id = send("tests.sleep_then_record", marker=marker, seconds=3)
    wait_until(lambda: redis_client.llen(f"test:{marker}:starts"), 20, "task start")
    child = int(redis_client.lindex(f"test:{marker}:starts", 0))
    parent = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
    (holder,) = [w for w in workers if w.process.pid == parent]
    (survivor,) = [w for w in workers if w is not holder]
    # kombu's unacked index scores each delivered message with its delivery time.
    (tag,) = [
        tag
        for tag, raw in redis_client.hgetall("unacked").items()
        if json.loads(raw)[0]["headers"]["id"] == task_id
    ]
    delivered_at = redis_client.zscore("unacked_index", tag)
    os.killpg(holder.process.pid, signal.SIGKILL)
    holder.process.wait(timeout=10)
    assert redis_client.llen(f"test:{marker}:finished") == 0

    # Up to the timeout the message waits in Redis's unacked set, not in the
    # queue, and the surviving worker, consuming all along, never gets it.
    while time.time() < delivered_at + visibility - 0.5:
        assert survivor.process.poll() is None
        assert redis_client.llen(f"test:{marker}:starts") == 1
        assert redis_client.llen(queue) == 0
        time.sleep(0.1)
    assert redis_client.hexists("unacked", tag)

    # kombu scans for expired unacked messages when a consumer starts, then only
    # every 10th 10 s poll cycle: a replacement worker started after the timeout
    # puts the message back, and one of the two runs it.
    while time.time() < delivered_at + visibility:
        time.sleep(0.1)
    start_worker("-n", f"c-{marker[:8]}@%h", **short)
    wait_until(lambda: redis_client.llen(f"test:{marker}:finished"), 60, "redelivery")
    assert redis_client.llen(f"test:{marker}:starts") == 2
    assert redis_client.get(f"test:{marker}:effects") == "1"


def test_request_id_reaches_the_task_log_lines(
    start_worker, send, redis_client
) -> None:
    from runtime.context import request_id_var

    marker = uuid.uuid4().hex
    worker = start_worker()
    token = request_id_var.set("req-from-http-0042")
    try:
        task_id = send("tests.log_line", marker=marker)
    finally:
        request_id_var.reset(token)
    wait_until(lambda: redis_client.get(f"test:{marker}:done"), 30, "task run")
    line = worker.wait_for_line(lambda text: f"task log line {marker}" in text)
    record = json.loads(line)
    assert record["request_id"] == "req-from-http-0042"
    assert record["task_id"] == task_id


@pytest.fixture
def admin_client(transactional_db):
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_failed_task_is_recorded_logged_and_requeued_from_admin(
    start_worker, send, redis_client, admin_client, queue
) -> None:
    from django.conf import settings

    from apps.core.models import FailedTask

    marker = uuid.uuid4().hex
    worker = start_worker()
    task_id = send("tests.always_fails", marker=marker)
    wait_until(lambda: FailedTask.objects.filter(task_id=task_id).exists(), 30, "row")
    failed = FailedTask.objects.get(task_id=task_id)
    assert failed.task_name == "tests.always_fails"
    assert failed.args == []
    assert failed.kwargs == {"marker": marker}
    assert failed.exception == f"ValueError('planned failure {marker}')"
    assert "planned failure" in failed.traceback
    line = worker.wait_for_line(lambda text: '"CRITICAL"' in text and task_id in text)
    record = json.loads(line)
    assert record["task_id"] == task_id
    assert record["task_name"] == "tests.always_fails"

    assert failed.queue == queue  # re-enqueued where it came from
    response = admin_client.post(
        f"/{settings.ADMIN_URL}core/failedtask/",
        {"action": "requeue", "_selected_action": [failed.pk]},
    )
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.requeued_at is not None
    wait_until(
        lambda: FailedTask.objects.filter(task_id=failed.requeued_task_id).exists(),
        30,
        "second failure of the re-enqueued task",
    )
    assert redis_client.get(f"test:{marker}:attempts") == "2"


def test_worker_metrics_count_task_outcomes(start_worker, send, redis_client) -> None:
    port = free_port()
    marker = uuid.uuid4().hex
    start_worker(WORKER_METRICS_PORT=str(port), METRICS_TOKEN=WORKER_METRICS_TOKEN)
    send("tests.log_line", marker=marker)
    send("tests.always_fails", marker=marker)
    wait_until(lambda: redis_client.get(f"test:{marker}:attempts"), 30, "failure")
    wait_until(lambda: redis_client.get(f"test:{marker}:done"), 30, "success")

    def scrape() -> str:
        return worker_metrics(port)

    wanted = (
        'celery_tasks_total{outcome="success",task="tests.log_line"} 1.0',
        'celery_tasks_total{outcome="failure",task="tests.always_fails"} 1.0',
        'celery_task_duration_seconds_count{task="tests.log_line"} 1.0',
    )
    wait_until(lambda: all(line in scrape() for line in wanted), 20, "metrics")


def test_a_poison_task_ends_in_failed_tasks_after_bounded_deliveries(
    start_worker, send, redis_client
) -> None:
    from apps.core.models import FailedTask

    port = free_port()
    marker = uuid.uuid4().hex
    worker = start_worker(
        WORKER_METRICS_PORT=str(port),
        METRICS_TOKEN=WORKER_METRICS_TOKEN,
        CELERY_TASK_MAX_DELIVERIES="3",
    )
    task_id = send("tests.kill_own_worker", marker=marker)

    def settled() -> bool:
        # Without a bound the kills go on: stop looking well past the bound.
        starts = redis_client.llen(f"test:{marker}:starts")
        return starts > 6 or FailedTask.objects.filter(task_id=task_id).exists()

    wait_until(settled, 150, "the poison task to be recorded as failed")
    failed = FailedTask.objects.get(task_id=task_id)
    assert redis_client.llen(f"test:{marker}:starts") == 3
    assert failed.task_name == "tests.kill_own_worker"
    assert failed.kwargs == {"marker": marker}
    assert failed.exception == (
        f"DeliveryLimitExceeded('tests.kill_own_worker[{task_id}] was delivered "
        "4 times (limit 3) without finishing')"
    )
    line = worker.wait_for_line(lambda text: '"CRITICAL"' in text and task_id in text)
    assert json.loads(line)["task_name"] == "tests.kill_own_worker"

    def scrape() -> str:
        return worker_metrics(port)

    wanted = 'celery_task_deliveries_exhausted_total{task="tests.kill_own_worker"} 1.0'
    wait_until(lambda: wanted in scrape(), 20, "the delivery-limit metric")
    # The worker goes on with other work.
    send("tests.log_line", marker=marker)
    wait_until(lambda: redis_client.get(f"test:{marker}:done"), 30, "next task")


def test_worker_metrics_port_requires_the_metrics_token(start_worker) -> None:
    import requests

    port = free_port()
    start_worker(WORKER_METRICS_PORT=str(port), METRICS_TOKEN=WORKER_METRICS_TOKEN)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: worker_metrics(port), 20, "the metrics port")
    anonymous = requests.get(url, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (
        403,
        "permission_denied",
    )
    assert "celery_queue_messages" in worker_metrics(port)
