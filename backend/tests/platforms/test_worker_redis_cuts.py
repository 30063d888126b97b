"""Redis cut three times for 30 s under two real workers (heavy: `make platform-test`).

Not a container test, but as long as one: it runs with the platform tests so that
`make test` stays short. After each cut, every worker consumes a canary within 60 s
or exits by its watchdog and is replaced (here by the test, as a restart policy
would); every task published throughout runs exactly once, except the task a
worker's connection carried when it was cut. Two CI runs of 2026-12-05 showed both
kinds: one lost (kombu's Redis transport takes a message off the queue with BRPOP and
records it as unacknowledged only once the reply has arrived, so a reply lost with
the connection loses the message) and one run twice (with acks late, a task whose
ack is lost in the cut is delivered again after the visibility timeout). The test
tolerates exactly that: a lost or twice-run task was published shortly before a cut,
at most one of each per worker per cut.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.support.net import free_port
from tests.support.redis import start_redis, stop_redis
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

CUTS = 3
# A task published this long before a cut may be the one in flight when it came.
IN_FLIGHT_SECONDS = 5.0
CUT_SECONDS = 30
CONSUME_WITHIN = 60
# Short enough that a task whose ack was lost in a cut comes back within the test.
SHORT_LIMITS = {
    "CELERY_TASK_TIME_LIMIT": "20",
    "CELERY_TASK_SOFT_TIME_LIMIT": "15",
    "CELERY_VISIBILITY_TIMEOUT": "30",
}


def consumed_after(directory: Path, moment: float) -> bool:
    """Did the worker with this HEARTBEAT_DIR run a canary after `moment`?"""
    consumed = directory / "celery-worker.consumed"
    return consumed.exists() and consumed.stat().st_mtime > moment


@pytest.mark.timeout(900)
def test_every_worker_consumes_again_after_each_of_three_redis_cuts(
    start_worker,
    queue,
    tmp_path: Path,
) -> None:
    port = free_port()
    server = start_redis(port, tmp_path)
    direct = f"redis://127.0.0.1:{port}/0"
    proxy = TcpProxy(port).start()
    listen = proxy.listen_port
    through_proxy = f"redis://127.0.0.1:{listen}/0"
    client = redis.Redis.from_url(direct, decode_responses=True)
    marker = uuid.uuid4().hex

    def start(index: int, generation: int):
        directory = tmp_path / f"worker{index}-{generation}"
        directory.mkdir()
        process = start_worker(
            "-n",
            f"cut{index}g{generation}@%h",
            REDIS_URL=through_proxy,
            HEARTBEAT_DIR=str(directory),
            **SHORT_LIMITS,
        )
        return process, directory

    workers = {i: (*start(i, 0), 0) for i in range(2)}

    # The web side keeps publishing straight to Redis (it is not cut off).
    sender = Celery(broker=direct)
    published: list[int] = []
    published_at: dict[int, float] = {}
    cuts: list[float] = []
    stop_publishing = threading.Event()

    def publish() -> None:
        n = 0
        while not stop_publishing.wait(0.2):
            published_at[n] = time.time()
            sender.send_task(
                "tests.record_run",
                kwargs={"marker": marker, "n": n, "url": direct},
                queue=queue,
            )
            published.append(n)
            n += 1

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    figures = []
    try:
        for _ in range(CUTS):
            time.sleep(5)
            cuts.append(time.time())
            proxy.stop()
            time.sleep(CUT_SECONDS)
            proxy = TcpProxy(port, listen).start()
            restored = time.time()
            waits = {}
            for index, (process, directory, generation) in list(workers.items()):
                deadline = time.monotonic() + CONSUME_WITHIN
                while time.monotonic() < deadline:
                    if consumed_after(directory, restored):
                        break
                    if process.process.poll() is not None:
                        break
                    time.sleep(0.2)
                if consumed_after(directory, restored):
                    waits[f"worker{index}"] = round(time.time() - restored, 1)
                    continue
                # Not consuming: it must have exited by its watchdog; replace it.
                assert process.process.poll() == 70, process.lines[-20:]
                new, new_dir = start(index, generation + 1)
                workers[index] = (new, new_dir, generation + 1)
                wait_until(
                    lambda d=new_dir: (d / "celery-worker.consumed").exists(),
                    CONSUME_WITHIN,
                    "the replacement's canary",
                )
                waits[f"worker{index}"] = f"replaced, {time.time() - restored:.1f}"
            figures.append(waits)
        stop_publishing.set()
        publisher.join(timeout=10)

        def in_flight_at_a_cut(n: int) -> bool:
            return any(
                cut - IN_FLIGHT_SECONDS <= published_at[n] <= cut for cut in cuts
            )

        def ran() -> list[int]:
            return [int(n) for n in client.lrange(f"test:{marker}:runs", 0, -1)]

        def all_ran() -> bool:
            done = set(ran())
            return all(n in done or in_flight_at_a_cut(n) for n in published)

        # A task whose ack was lost in a cut comes back after the visibility timeout.
        wait_until(all_ran, 120, "every published task to run")
        time.sleep(int(SHORT_LIMITS["CELERY_VISIBILITY_TIMEOUT"]) + 5)
        runs = ran()
        lost = sorted(set(published) - set(runs))
        print(f"\nafter each cut, seconds to a canary per worker: {figures}")
        print(f"{len(published)} tasks published, {len(runs)} runs, lost {lost}")
        twice = sorted(n for n in set(runs) if runs.count(n) > 1)
        print(f"run twice {twice}")
        assert set(runs) <= set(published)
        assert all(runs.count(n) <= 2 for n in twice), "run more than twice"
        assert all(in_flight_at_a_cut(n) for n in lost + twice), "outside a cut"
        assert len(lost) <= CUTS * len(workers), lost
        assert len(twice) <= CUTS * len(workers), twice
    finally:
        stop_publishing.set()
        proxy.stop()
        stop_redis(server)
