"""Private redis-servers: fault tests cut their own, never the run's shared one."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis

from tests.servers import redis_ready, redis_server_argv
from tests.support.wait import wait_until


def start_redis(
    port: int,
    directory: Path,
    *,
    config_file: Path | None = None,
    options: Sequence[str] = (),
) -> subprocess.Popen:
    """Start a throwaway redis-server on `port`; return once it answers PING.

    `config_file` is read first (redis-server wants it as its first argument), and
    `options` (e.g. `--maxmemory-policy allkeys-lru`) come last.
    """
    binary, *argv = redis_server_argv(
        binary="redis-server", port=port, directory=directory
    )
    first = [str(config_file)] if config_file else []
    process = subprocess.Popen(
        [binary, *first, *argv, *options], stdout=subprocess.DEVNULL
    )
    wait_until(lambda: redis_ready(port), 10, "redis-server to start", interval=0.05)
    return process


def stop_redis(process: subprocess.Popen) -> None:
    """Stop a redis-server started by start_redis, and reap it."""
    process.terminate()
    process.wait(timeout=10)


def redis_client(url: str) -> redis.Redis:
    """A client that decodes answers to str."""
    return redis.Redis.from_url(url, decode_responses=True)
