"""Redis through Sentinel: what each Redis client of the project needs to follow it.

With REDIS_SENTINELS set (host:port of each sentinel), REDIS_URL names the master by
its Sentinel name where a host would be: `redis://[:password@]<master-name>/<db>`.
Every client then asks the sentinels for the current master when it connects, and
connects again after a failover without a restart: the Celery broker (kombu's
`sentinel://` transport), RedBeat (`redis-sentinel://`), django-redis (its
SentinelConnectionFactory: the cache, the inventory gate, the throttle, delivery
counts) and the project's own clients (token revocations, the dependency wait).

Django-free: settings build their Redis sections from it at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from runtime.env import Sentinels


@dataclass(frozen=True)
class SentinelTarget:
    """The master a set of sentinels watches, and how to log in to it."""

    sentinels: Sentinels
    master: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None
    socket_timeout: float

    def sentinel_kwargs(self) -> dict[str, Any]:
        """How to talk to the sentinels themselves (they may have their own auth)."""
        return {
            "password": self.sentinel_password,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_timeout,
        }


def sentinel_target(
    *,
    url: str,
    sentinels: Sentinels,
    sentinel_password: str | None,
    socket_timeout: float,
) -> SentinelTarget:
    """Read the master's name, database and credentials from REDIS_URL."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    return SentinelTarget(
        sentinels=sentinels,
        master=parts.hostname or "",
        db=int(path) if path.isdigit() else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        sentinel_password=sentinel_password,
        socket_timeout=socket_timeout,
    )


def redis_client(url: str, *, target: SentinelTarget | None, **options: Any) -> Any:
    """A redis-py client of the master: through the sentinels when there are any."""
    import redis
    from redis.sentinel import Sentinel

    if target is None:
        return redis.Redis.from_url(url, **options)
    sentinel = Sentinel(
        list(target.sentinels), sentinel_kwargs=target.sentinel_kwargs()
    )
    return sentinel.master_for(
        target.master,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )


def celery_broker(target: SentinelTarget) -> tuple[str, dict[str, Any]]:
    """kombu's broker URL (one `sentinel://` per sentinel) and transport options."""
    userinfo = ""
    if target.password:
        userinfo = f"{quote(target.username or '', safe='')}:"
        userinfo += f"{quote(target.password, safe='')}@"
    url = ";".join(
        f"sentinel://{userinfo}{host}:{port}/{target.db}"
        for host, port in target.sentinels
    )
    return url, {
        "master_name": target.master,
        "sentinel_kwargs": target.sentinel_kwargs(),
    }


def redbeat_redis(target: SentinelTarget) -> tuple[str, dict[str, Any]]:
    """RedBeat's URL and redis options for a Sentinel-managed master."""
    return "redis-sentinel://", {
        "sentinels": list(target.sentinels),
        "service_name": target.master,
        "password": target.password,
        "username": target.username,
        "db": target.db,
        "socket_timeout": target.socket_timeout,
        "sentinel_kwargs": target.sentinel_kwargs(),
    }


def django_redis_options(target: SentinelTarget) -> dict[str, Any]:
    """A django-redis cache's OPTIONS entries that make it follow the sentinels.

    Its LOCATION stays REDIS_URL: django-redis reads the master's name from the
    URL's host.
    """
    return {
        "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
        "CLIENT_CLASS": "django_redis.client.SentinelClient",
        "SENTINELS": list(target.sentinels),
        "SENTINEL_KWARGS": target.sentinel_kwargs(),
    }
