"""Queue statistics for operators and autoscalers: how far behind are the workers?

Per queue: messages waiting (every priority sub-list kombu's Redis transport keeps),
age of the oldest waiting message (from the publish time each message carries in
its headers, stamped by apps/core/worker/task_context.py), deliveries beyond the first
(counted by apps/core/worker/deliveries.py, fleet-wide in Redis) and dead-lettered tasks
(FailedTask rows not re-enqueued). Read by the worker's /metrics and
`manage.py queue_stats`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from celery.app import default_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.core.redis.roles import durable_redis

logger = logging.getLogger(__name__)

PUBLISHED_AT_HEADER = "published_at"
# Hash: queue -> deliveries beyond the first, in the durable Redis with the counts
# (counted by queue_redelivery_count for the task base class in
# apps/core/worker/deliveries.py).
REDELIVERIES_KEY = "celery:redeliveries"


@dataclass(frozen=True)
class QueueStats:
    queue: str
    depth: int
    oldest_age_seconds: float  # 0 when nothing waits
    redelivered: int
    dead_lettered: int


def _published_at(raw: bytes | str | None) -> float | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)["headers"][PUBLISHED_AT_HEADER]
        return float(value)
    except (ValueError, KeyError, TypeError):
        return None


def queue_backlog_read(*, queues: Iterable[str]) -> dict[str, tuple[int, float]]:
    """Return {queue: (depth, oldest age in seconds)} read from the broker."""
    result: dict[str, tuple[int, float]] = {}
    # The project's app, the default of every thread (config/celery.py).
    with default_app.connection_for_read() as connection:
        channel = connection.default_channel
        client = channel.client
        for queue in queues:
            # The transport's own naming of a queue's priority sub-lists, so this
            # counts exactly what its BRPOP consumes.
            keys = [channel._q_for_pri(queue, pri) for pri in channel.priority_steps]
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.llen(key)
                    # LPUSH to publish, BRPOP to consume: the oldest is the tail.
                    pipe.lindex(key, -1)
                replies = pipe.execute()
            now = time.time()
            depth = sum(int(n) for n in replies[0::2])
            stamps = [s for s in map(_published_at, replies[1::2]) if s is not None]
            oldest = max(0.0, now - min(stamps)) if stamps and depth else 0.0
            result[queue] = (depth, oldest)
    return result


def queue_redelivery_count(*, queue: str) -> None:
    """Count a delivery beyond the first, per queue, for the queue metrics."""
    try:
        durable_redis().hincrby(REDELIVERIES_KEY, queue, 1)
    except Exception as exc:  # noqa: BLE001 - a metric, never a reason to fail
        logger.warning("redelivery not counted for %s: %s", queue, exc)


def queue_redeliveries_read() -> dict[str, int]:
    raw = durable_redis().hgetall(REDELIVERIES_KEY)
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


def queue_dead_lettered_read() -> dict[str, int]:
    from django.db.models import Count

    from apps.core.models import FailedTask

    rows = (
        FailedTask.objects.filter(requeued_at=None)
        .values("queue")
        .annotate(n=Count("id"))
    )
    return {row["queue"]: row["n"] for row in rows}


def queue_stats_read(*, queues: Iterable[str]) -> list[QueueStats]:
    """Every figure for each queue (raises if the broker is unreachable)."""
    queues = list(queues)
    backlog = queue_backlog_read(queues=queues)
    redelivered = queue_redeliveries_read()
    dead = queue_dead_lettered_read()
    return [
        QueueStats(
            queue=queue,
            depth=backlog[queue][0],
            oldest_age_seconds=backlog[queue][1],
            redelivered=redelivered.get(queue, 0),
            dead_lettered=dead.get(queue, 0),
        )
        for queue in queues
    ]


class QueueCollector(Collector):
    """The queue figures on the worker's /metrics, read at scrape time."""

    def __init__(self, queues: Iterable[str]) -> None:
        self.queues = list(queues)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily(
            "celery_queue_messages",
            "Messages waiting in the queue (all priority sub-lists).",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "celery_queue_oldest_message_age_seconds",
            "Seconds since the oldest waiting message was published (0: empty).",
            labels=["queue"],
        )
        redelivered = CounterMetricFamily(
            "celery_queue_redelivered",
            "Deliveries of a task beyond its first (worker lost, restart), all "
            "workers together.",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "celery_queue_dead_lettered",
            "Tasks recorded as failed (FailedTask rows) and not re-enqueued.",
            labels=["queue"],
        )
        try:
            backlog = queue_backlog_read(queues=self.queues)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on Redis
            logger.warning("queue metrics unavailable: %s", exc)
        else:
            for queue, (n, oldest) in backlog.items():
                depth.add_metric([queue], n)
                age.add_metric([queue], oldest)
            yield depth
            yield age
        try:
            counts = queue_redeliveries_read()
        except Exception as exc:  # noqa: BLE001
            logger.warning("redelivery counts unavailable: %s", exc)
        else:
            for queue in self.queues:
                redelivered.add_metric([queue], counts.get(queue, 0))
            yield redelivered
        from django.db import connection

        try:
            rows = queue_dead_lettered_read()
        except Exception as exc:  # noqa: BLE001
            logger.warning("dead-lettered counts unavailable: %s", exc)
            rows = None
        finally:
            # Each scrape runs in a new thread of the metrics server: its
            # connection would otherwise stay open until PostgreSQL drops it.
            connection.close()
        if rows is not None:
            for queue in self.queues:
                dead.add_metric([queue], rows.get(queue, 0))
            yield dead
