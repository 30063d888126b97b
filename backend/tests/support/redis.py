"""Private redis-servers: fault tests cut their own, never the run's shared one."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import redis

from tests.support.net import free_port
from tests.support.servers import redis_ready, redis_server_argv
from tests.support.tcp_proxy import TcpProxy
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


class RedisBehindProxy:
    """The run's Redis (REDIS_URL) reached through a TCP proxy a test can cut and
    restore: an outage as clients see it during a failover, the data kept."""

    def __init__(self) -> None:
        parts = urlsplit(os.environ["REDIS_URL"])
        self._target = parts.port
        self._port = free_port()
        self.url = f"redis://127.0.0.1:{self._port}{parts.path}"
        self._proxy = TcpProxy(target_port=self._target, listen_port=self._port)
        self._proxy.start()

    def cut(self) -> None:
        self._proxy.stop()

    def restore(self) -> None:
        self._proxy = TcpProxy(target_port=self._target, listen_port=self._port)
        self._proxy.start()


def redis_client(url: str) -> redis.Redis:
    """A client that decodes answers to str."""
    return redis.Redis.from_url(url, decode_responses=True)


MASTER_NAME = "mymaster"


class SentinelSet:
    """A Redis primary, one replica and three sentinels watching them, on 127.0.0.1.

    Failover is quick, as a drill wants: a master unanswered for 1 s is down, and
    two sentinels agree.
    """

    def __init__(self, directory: Path) -> None:
        from tests.support.net import free_port

        self.directory = directory
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports = {"primary": free_port(), "replica": free_port()}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._start_redis("primary")
        self._start_redis(
            "replica", "--replicaof", "127.0.0.1", str(self.ports["primary"])
        )
        wait_until(self._replica_in_sync, 20, "the replica to sync", interval=0.1)
        for index, port in enumerate(self.sentinel_ports):
            config = directory / f"sentinel-{index}.conf"
            # Sentinels rewrite their configuration file: each has its own.
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports['primary']} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.processes[f"sentinel-{index}"] = subprocess.Popen(
                ["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL
            )
        for port in self.sentinel_ports:
            wait_until(lambda p=port: redis_ready(p), 10, "a sentinel", interval=0.05)
        wait_until(
            lambda: all(self._sees_replica(p) for p in self.sentinel_ports),
            20,
            "every sentinel to know the replica",
            interval=0.1,
        )

    def _start_redis(self, name: str, *extra: str) -> None:
        data = self.directory / name
        # A restart reuses the directory (no persistence: it holds nothing).
        data.mkdir(exist_ok=True)
        argv = redis_server_argv(
            binary="redis-server", port=self.ports[name], directory=data
        )
        self.processes[name] = subprocess.Popen(
            [*argv, *extra], stdout=subprocess.DEVNULL
        )
        wait_until(lambda: redis_ready(self.ports[name]), 10, name, interval=0.05)

    def _replica_in_sync(self, name: str = "replica") -> bool:
        info = redis.Redis(port=self.ports[name]).info("replication")
        return info.get("master_link_status") == "up"

    def _sees_replica(self, port: int, name: str = "replica") -> bool:
        replicas = redis.Redis(port=port).sentinel_slaves(MASTER_NAME)
        return any(
            r.get("port") == self.ports[name]
            and not {"s_down", "o_down", "disconnected"}
            & set(r.get("flags", "").split(","))
            for r in replicas
        )

    @property
    def env(self) -> dict[str, str]:
        """REDIS_URL and REDIS_SENTINELS of a deployment on this set."""
        return {
            "REDIS_URL": f"redis://{MASTER_NAME}/0",
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
        }

    def master_port(self) -> int:
        """The master's port, as the first sentinel that answers says."""
        for port in self.sentinel_ports:
            try:
                _, master = redis.Redis(port=port).sentinel_get_master_addr_by_name(
                    MASTER_NAME
                )
                return int(master)
            except redis.RedisError:
                continue
        raise AssertionError("no sentinel answers")

    def client(self) -> redis.Redis:
        """A decoding client of the current master, found through the sentinels."""
        from redis.sentinel import Sentinel

        sentinel = Sentinel([("127.0.0.1", p) for p in self.sentinel_ports])
        return sentinel.master_for(MASTER_NAME, decode_responses=True, socket_timeout=2)

    def master(self) -> str:
        """The name ("primary" or "replica") of the server the sentinels call master."""
        port = self.master_port()
        return next(name for name, p in self.ports.items() if p == port)

    def kill(self, name: str) -> None:
        self.processes[name].kill()
        self.processes[name].wait(timeout=10)

    def restart_as_replica(self, name: str, timeout: float = 30) -> None:
        """Start a killed server again as a replica of the current master, as a
        platform restarts a crashed Redis; return once it is in sync and every
        sentinel counts it as a healthy replica (a candidate for the next failover).

        Started with --replicaof, never as an empty master: without persistence it
        comes back with nothing, and the sentinels would otherwise see a second
        master until they reconfigure it.
        """
        master = self.master_port()
        assert master != self.ports[name], f"{name} is still the master"
        assert self.processes[name].poll() is not None, f"{name} is running"
        self._start_redis(name, "--replicaof", "127.0.0.1", str(master))
        wait_until(
            lambda: self._replica_in_sync(name),
            timeout,
            f"{name} to sync",
            interval=0.1,
        )
        wait_until(
            lambda: all(self._sees_replica(p, name) for p in self.sentinel_ports),
            timeout,
            f"every sentinel to count {name} as a replica again",
            interval=0.2,
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            process.wait(timeout=10)
