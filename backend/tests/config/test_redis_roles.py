"""Redis by role: what must never be evicted stays on REDIS_URL, and the deploy
check reads that Redis's maxmemory-policy. Each test runs redis-servers of its own:
the run's shared Redis is never reconfigured."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.env import PRODUCTION_ENV, clean_environ
from tests.support.net import free_port
from tests.support.processes import run_python
from tests.support.redis import start_redis, stop_redis

PROD = {
    **PRODUCTION_ENV,
    # Verified TLS to the remote database: core.W020 is not this module's subject.
    "DATABASE_URL": "postgres://app:pw@db.internal:5432/app?sslmode=verify-full",
    "METRICS_TOKEN": "m" * 32,
}
EVICTS = (
    ": under memory pressure it can evict queued Celery tasks, RedBeat's lock and "
    "the inventory gate counters; set noeviction."
)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a redis-server with these options (or config file); return its URL."""
    processes: list[subprocess.Popen] = []

    def start(*options: str, config: str | None = None) -> str:
        port = free_port()
        directory = tmp_path / str(port)
        directory.mkdir()
        config_file = None
        if config is not None:
            config_file = directory / "redis.conf"
            config_file.write_text(config)
        processes.append(
            start_redis(port, directory, config_file=config_file, options=options)
        )
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for process in processes:
        stop_redis(process)


def check_deploy(**overrides: str) -> subprocess.CompletedProcess[str]:
    return run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=clean_environ(**PROD, **overrides),
    )


def test_deploy_check_passes_a_broker_redis_that_never_evicts(own_redis) -> None:
    result = check_deploy(REDIS_URL=own_redis("--maxmemory-policy", "noeviction"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (1 silenced)." in result.stdout


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "allkeys-random"])
def test_deploy_check_warns_when_the_broker_redis_can_evict(
    own_redis, policy: str
) -> None:
    result = check_deploy(REDIS_URL=own_redis("--maxmemory-policy", policy))
    assert result.returncode == 1
    assert (
        f"?: (core.W007) the Redis at REDIS_URL has maxmemory-policy {policy}{EVICTS}"
    ) in result.stderr
    assert "REDIS_CACHE_URL" in result.stderr  # the hint: the cache's own Redis


def test_deploy_check_names_the_broker_variable_of_a_broker_of_its_own(
    own_redis,
) -> None:
    """The cache may evict; a separate broker Redis that evicts is named as such."""
    result = check_deploy(
        REDIS_URL=own_redis("--maxmemory-policy", "noeviction"),
        CELERY_BROKER_URL=own_redis("--maxmemory-policy", "allkeys-lru"),
        REDIS_CACHE_URL=own_redis("--maxmemory-policy", "allkeys-lru"),
    )
    assert result.returncode == 1
    assert (
        "?: (core.W007) the Redis at CELERY_BROKER_URL has maxmemory-policy "
        f"allkeys-lru{EVICTS}"
    ) in result.stderr
    assert "core.W007) the Redis at REDIS_URL" not in result.stderr
    assert "REDIS_CACHE_URL has" not in result.stderr
    assert "1 issue" in result.stderr


def test_deploy_check_says_it_could_not_check_when_config_is_disabled(
    own_redis,
) -> None:
    """Managed Redis (ElastiCache) renames or blocks CONFIG: say so, do not fail."""
    url = own_redis(config='rename-command CONFIG ""\n')
    with pytest.raises(redis.ResponseError, match="unknown command"):
        redis.Redis.from_url(url).config_get("maxmemory-policy")
    result = check_deploy(REDIS_URL=url)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert (
        "?: (core.I008) could not check the maxmemory-policy of the Redis at "
        "REDIS_URL (unknown command 'CONFIG', with args beginning with: 'GET' "
        "'maxmemory-policy' ); make sure it is noeviction."
    ) in output
    assert "core.W007" not in output


def test_the_cache_goes_to_redis_cache_url_and_the_rest_to_redis_url(
    own_redis,
) -> None:
    durable, cache = own_redis(), own_redis()
    code = (
        "import django, json; django.setup()\n"
        "from django.conf import settings\n"
        "from django.core.cache import cache\n"
        "from apps.core.drf import rate_windows\n"
        "from apps.inventory import gate\n"
        "cache.set('role-probe', 1)\n"
        "rate_windows._window_add(key='role-window', amount=1, seconds=60)\n"
        "gate.gate_warm(sku='ROLE-1', available=5)\n"
        "print(json.dumps([settings.CELERY_BROKER_URL,"
        " settings.CELERY_REDBEAT_REDIS_URL]))\n"
    )
    result = run_python(
        ["-c", code],
        env=clean_environ(
            DEBUG="true",
            DJANGO_SETTINGS_MODULE="config.settings",
            REDIS_URL=durable,
            REDIS_CACHE_URL=cache,
        ),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [durable, durable]
    durable_keys = set(redis.Redis.from_url(durable, decode_responses=True).keys())
    cache_keys = set(redis.Redis.from_url(cache, decode_responses=True).keys())
    assert durable_keys == {"inventory:available:ROLE-1"}
    assert cache_keys == {"backend:1:role-probe", "backend:1:role-window"}
