"""A Redis outage makes cache calls miss, logged once per interval, never a 500."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import caches
from django.test import override_settings

from apps.core.redis.cache import CACHE_LOGGER
from tests.support.net import free_port


def test_cache_calls_miss_and_log_once_when_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    for log_filter in logging.getLogger(CACHE_LOGGER).filters:
        log_filter.reset()  # earlier tests may have logged an outage already
    with override_settings(CACHES=dead):
        cache = caches.create_connection("default")
        results = [cache.get("some-key") for _ in range(5)]
        cache.set("some-key", "value")
    assert results == [None] * 5
    logged = [r for r in caplog.records if r.name == CACHE_LOGGER]
    assert len(logged) == 1, logged
    assert "Connection refused" in str(logged[0].exc_info[1])


def test_cache_logger_has_the_interval_filter() -> None:
    from django.conf import settings

    logger = logging.getLogger(settings.DJANGO_REDIS_LOGGER)
    intervals = [f.interval for f in logger.filters if hasattr(f, "interval")]
    assert intervals == [settings.CACHE_ERROR_LOG_INTERVAL]
