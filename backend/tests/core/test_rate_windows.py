"""The throttle's shared window counters, added to Redis in batches per process.

Each `WindowCounters()` stands for one process; all of them share the test Redis.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache
from django.test import override_settings

from apps.core.drf.rate_windows import MAX_UNSENT_SECONDS, WindowCounters, batch_size
from tests.support.net import free_port

NOW = 1_800_000_000.0
WINDOW_END = NOW + 60


@pytest.fixture
def key() -> str:
    return f"test-window-{uuid.uuid4().hex}"


def shared_count(key: str) -> int:
    return int(cache.get(key) or 0)


def test_batch_is_one_percent_of_the_limit_between_1_and_32() -> None:
    assert [batch_size(n) for n in (1, 60, 199, 200, 1000, 3200, 6000, 10**8)] == [
        1,
        1,
        1,
        2,
        10,
        32,
        32,
        32,
    ]


def test_limits_below_200_are_counted_in_redis_exactly(key) -> None:
    process = WindowCounters()
    admitted = [
        process.admit(key=key, limit=150, now=NOW, window_end=WINDOW_END)
        for _ in range(160)
    ]
    assert admitted == [True] * 150 + [False] * 10
    assert shared_count(key) == 160


def test_one_process_admits_exactly_its_limit_and_sends_once_per_batch(key) -> None:
    process = WindowCounters()
    limit = 1000  # batch 10
    admitted = [
        process.admit(key=key, limit=limit, now=NOW, window_end=WINDOW_END)
        for _ in range(1100)
    ]
    assert admitted == [True] * limit + [False] * 100
    # The first request, then every 10th until the window is within a batch of its
    # limit; from there every request is sent.
    assert shared_count(key) == 1100


def test_processes_overshoot_by_at_most_their_unsent_batches(key) -> None:
    processes = [WindowCounters() for _ in range(3)]
    limit = 1000
    batch = batch_size(limit)
    admitted = 0
    for attempt in range(1500):
        process = processes[attempt % 3]
        admitted += process.admit(key=key, limit=limit, now=NOW, window_end=WINDOW_END)
    assert limit <= admitted <= limit + (len(processes) - 1) * (batch - 1)
    # Unsent counts go out within MAX_UNSENT_SECONDS: then the shared count is exact.
    later = NOW + MAX_UNSENT_SECONDS
    for process in processes:
        assert not process.admit(key=key, limit=limit, now=later, window_end=WINDOW_END)
    assert shared_count(key) == 1500 + len(processes)


def test_a_trickle_is_sent_after_at_most_a_second(key) -> None:
    process = WindowCounters()
    for _ in range(3):
        assert process.admit(key=key, limit=6000, now=NOW, window_end=WINDOW_END)
    assert shared_count(key) == 1  # the window's first request went at once
    assert process.admit(key=key, limit=6000, now=NOW + 0.5, window_end=WINDOW_END)
    assert shared_count(key) == 1
    assert process.admit(
        key=key, limit=6000, now=NOW + MAX_UNSENT_SECONDS, window_end=WINDOW_END
    )
    assert shared_count(key) == 5


def test_a_window_learns_what_other_processes_spent(key) -> None:
    first, second = WindowCounters(), WindowCounters()
    for _ in range(1000):
        first.admit(key=key, limit=1000, now=NOW, window_end=WINDOW_END)
    first.admit(key=key, limit=1000, now=NOW + 1, window_end=WINDOW_END)
    # A process's first request of a window is sent at once and sees the others'.
    assert not second.admit(key=key, limit=1000, now=NOW + 1, window_end=WINDOW_END)


def test_redis_down_admits_and_forgets_the_unsent_count(key) -> None:
    dead = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    process = WindowCounters()
    with override_settings(CACHES=dead):
        # A limit of 1 would refuse the second request if the count were known.
        admitted = [
            process.admit(key=key, limit=1, now=NOW, window_end=WINDOW_END)
            for _ in range(3)
        ]
    assert admitted == [True, True, True]
    assert process.admit(key=key, limit=1, now=NOW, window_end=WINDOW_END)
    assert shared_count(key) == 1  # the outage's three were not added later
