"""Which Redis must never evict, and whether it does.

REDIS_URL (and CELERY_BROKER_URL when it is a Redis of its own) carry the task queue,
RedBeat's lock, the inventory gate counters and delivery counts: a Redis that evicts
under memory pressure can drop queued tasks or a gate counter (celery PR #6319). Only
`noeviction` is safe there. The cache (REDIS_CACHE_URL) may evict.

Read by the deploy check core.W007/core.I008 (apps/core/checks.py) and logged by the
worker and beat at start (prestart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SAFE_POLICY = "noeviction"
REDIS_SCHEMES = ("redis", "rediss")


@dataclass(frozen=True)
class EvictionPolicy:
    """The maxmemory-policy of the Redis a variable names, or why it is unknown."""

    variable: str
    policy: str | None
    error: str | None = None

    @property
    def can_evict(self) -> bool:
        return self.policy is not None and self.policy != SAFE_POLICY

    def describe(self) -> str:
        if self.policy is None:
            return (
                f"could not check the maxmemory-policy of the Redis at {self.variable} "
                f"({self.error}); make sure it is {SAFE_POLICY}"
            )
        if self.can_evict:
            return (
                f"the Redis at {self.variable} has maxmemory-policy {self.policy}: "
                "under memory pressure it can evict queued Celery tasks, RedBeat's "
                f"lock and the inventory gate counters; set {SAFE_POLICY}"
            )
        return f"the Redis at {self.variable} has maxmemory-policy {self.policy}"


def durable_redis_urls(
    *, broker_url: str | None, redis_url: str | None
) -> list[tuple[str, str]]:
    """(variable, URL) of every Redis that must not evict, each Redis once."""
    found: dict[str, str] = {}
    if broker_url and urlsplit(broker_url).scheme in REDIS_SCHEMES:
        found[broker_url] = "CELERY_BROKER_URL"
    if redis_url and redis_url not in found:
        found[redis_url] = "REDIS_URL"
    return [(variable, url) for url, variable in found.items()]


def durable_redis() -> Any:
    """The client of REDIS_URL, the Redis that must not evict.

    Never the cache's Redis for counts that must survive memory pressure: an evicted
    delivery count would let a poison task run again and again.
    """
    from django.conf import settings
    from django_redis import get_redis_connection

    return get_redis_connection(settings.DURABLE_REDIS_ALIAS)


def eviction_policy_read(
    *, variable: str, url: str, timeout: float, sentinel: Any = None
) -> EvictionPolicy:
    """Ask the Redis at `url` for its maxmemory-policy; never raise.

    Managed Redis often forbids CONFIG (ElastiCache renames it, ACLs may deny it):
    that, like an unreachable Redis, is reported as unknown, not as a failure.
    """
    from redis.exceptions import RedisError

    from apps.core.redis.sentinel import redis_client

    client = redis_client(
        url,
        target=sentinel,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )
    try:
        answer = client.config_get("maxmemory-policy")
    except RedisError as exc:
        return EvictionPolicy(variable=variable, policy=None, error=str(exc))
    finally:
        client.close()
    policy = answer.get("maxmemory-policy")
    if policy is None:
        return EvictionPolicy(
            variable=variable, policy=None, error="CONFIG GET returned no policy"
        )
    return EvictionPolicy(variable=variable, policy=policy)


def eviction_policies_read(
    *,
    broker_url: str | None,
    redis_url: str | None,
    timeout: float,
    sentinel: Any = None,
) -> list[EvictionPolicy]:
    """The policy of each Redis that must not evict (none without Redis).

    `sentinel`: REDIS_URL's Sentinel target, when it names a master that way.
    """
    return [
        eviction_policy_read(
            variable=variable,
            url=url,
            timeout=timeout,
            sentinel=sentinel if variable == "REDIS_URL" else None,
        )
        for variable, url in durable_redis_urls(
            broker_url=broker_url, redis_url=redis_url
        )
    ]
