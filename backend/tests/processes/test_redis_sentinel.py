"""Redis behind Sentinel: web, worker and beat follow a failover, without a restart.

A private primary, replica and three sentinels (tests/support/redis.py); the run's
own Redis is never touched. The primary is SIGKILLed under reservation traffic.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from celery import Celery

from apps.core.redis.sentinel import celery_broker, sentinel_target
from runtime.env import sentinels_parse
from tests.support.processes import WORKER_COMMAND
from tests.support.redis import SentinelSet
from tests.support.wait import wait_until

HTTPS = {"X-Forwarded-Proto": "https"}
FAILOVER_BUDGET_SECONDS = 30


@pytest.fixture
def sentinel_set(tmp_path):
    redis_set = SentinelSet(tmp_path)
    yield redis_set
    redis_set.stop()


def sender_for(env: dict[str, str]) -> Celery:
    """A Celery client publishing through the sentinels, as web does."""
    target = sentinel_target(
        url=env["REDIS_URL"],
        sentinels=sentinels_parse(env["REDIS_SENTINELS"].split(",")),
        sentinel_password=None,
        socket_timeout=2,
    )
    url, options = celery_broker(target)
    return Celery(broker=url, broker_transport_options=options, set_as_current=False)


def test_web_worker_and_beat_follow_a_sentinel_failover(
    sentinel_set, start_gunicorn, start_entrypoint, make_product, make_user, queue
) -> None:
    from rest_framework.authtoken.models import Token

    from apps.inventory.models import Reservation, Stock

    env = sentinel_set.env
    # Made here, the product's restock adds to the test run's own Redis, not to the
    # set's: before any reconciliation (beat's first server check) can read its
    # stock half made.
    product = make_product(on_hand=1000)
    web = start_gunicorn(**env)
    worker = start_entrypoint(
        "worker",
        *WORKER_COMMAND,
        CELERY_WORKER_QUEUES=queue,
        CELERY_WORKER_CONCURRENCY="1",
        **env,
    )
    worker.wait_for_line(lambda line: "ready." in line, timeout=60)
    # Beat schedules onto the test's queue (its first CELERY_WORKER_QUEUES entry).
    beat = start_entrypoint("beat", CELERY_WORKER_QUEUES=queue, **env)
    # Running and holding RedBeat's lock: it sends what is due.
    beat.wait_for_line(lambda line: "Sending due task" in line, timeout=60)
    token = Token.objects.create(user=make_user()).key
    headers = {"Authorization": f"Token {token}", **HTTPS}
    sender = sender_for(env)

    answers: list[str] = []

    def reserve() -> int:
        try:
            response = requests.post(
                f"{web.base_url}/api/v1/reservations/",
                json={"sku": product.sku, "quantity": 1},
                headers=headers,
                timeout=5,
            )
        except requests.RequestException as exc:
            answers.append(str(exc))
            return 0
        answers.append(response.text)
        return response.status_code

    def task_round_trip(timeout: float) -> None:
        marker = uuid.uuid4().hex
        sender.send_task("tests.log_line", kwargs={"marker": marker}, queue=queue)
        wait_until(
            lambda: sentinel_set.client().get(f"test:{marker}:done"),
            timeout,
            "the worker to run a task",
        )

    statuses = [reserve() for _ in range(5)]
    assert statuses == [201] * 5, answers
    task_round_trip(30)
    replica = sentinel_set.ports["replica"]

    def readiness() -> str:
        try:
            return requests.get(f"{web.base_url}/health/ready/", timeout=5).json()[
                "status"
            ]
        except (requests.RequestException, ValueError):
            return "unanswered"

    server_changes = "Redis is another server (failover or restart)"
    # The first check after start finds no mark yet: count only what follows.
    changes_before = worker.output().count(server_changes)
    killed_at = time.monotonic()
    sentinel_set.kill("primary")
    readiness_seen = set()
    # Reservations go on through the failover: with Redis gone the gate's breaker
    # sends them to the database path, which decides alone.
    while sentinel_set.master_port() != replica or readiness() != "ok":
        statuses.append(reserve())
        readiness_seen.add(readiness())
        assert time.monotonic() - killed_at < FAILOVER_BUDGET_SECONDS, (
            statuses,
            readiness_seen,
        )
        time.sleep(0.2)
    window = time.monotonic() - killed_at
    print(
        f"Redis back for web {window:.1f}s after the kill "
        f"(readiness meanwhile: {sorted(readiness_seen)}); "
        f"{len(statuses) - 5} reservations during it: "
        f"{sorted(set(statuses[5:]))}"
    )
    assert set(statuses) == {201}
    # Tasks flow again through the promoted replica, to the same worker process.
    task_round_trip(FAILOVER_BUDGET_SECONDS)
    statuses += [reserve() for _ in range(5)]
    assert set(statuses) == {201}
    assert web.process.poll() is None
    assert worker.process.poll() is None
    assert beat.process.poll() is None, beat.output()

    # Beat's server check saw another Redis and had the counter reconciled: during
    # the failover the database path sold units the counter never heard of.
    wait_until(
        lambda: worker.output().count(server_changes) > changes_before,
        FAILOVER_BUDGET_SECONDS,
        "the server check to see the promoted replica",
    )
    available = 1000 - len(statuses)
    counter_key = f"inventory:available:{product.sku}"
    wait_until(
        lambda: sentinel_set.client().get(counter_key) == str(available),
        FAILOVER_BUDGET_SECONDS,
        "the gate counter to agree with the database",
    )

    # The books: every acknowledged reservation is a row, and the stock agrees.
    accepted = len(statuses)
    assert Reservation.objects.filter(product=product).count() == accepted
    assert Stock.objects.get(product=product).reserved == accepted
