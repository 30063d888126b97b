"""What one request costs in PostgreSQL queries and Redis commands, counted exactly.

Redis commands are counted by a private redis-server's INFO commandstats (every
command, including those a Lua script runs), so that no other client's traffic is
counted. Queries are counted with CaptureQueriesContext.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import partial

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from apps.core.drf import throttling, token_cache
from apps.core.drf.rate_windows import WindowCounters, batch_size
from apps.core.drf.throttling import UserRateThrottle
from apps.inventory import gate
from tests.support.factories import token_client
from tests.support.net import free_port
from tests.support.redis import start_redis, stop_redis

# A fixed throttle clock: warm-up and measured requests share one rate window.
FIXED_NOW = 1_800_000_000.0


@pytest.fixture
def private_redis(tmp_path, monkeypatch) -> Iterator[redis.Redis]:
    """Point the cache, the gate and the throttle at a redis-server of our own."""
    # This process's revocation listener stays on the shared test Redis: its own
    # commands must not be counted.
    token_cache._ensure_listener()
    assert token_cache.listening.wait(timeout=10), "revocation listener not subscribed"
    port = free_port()
    process = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = url
    caches[settings.DURABLE_REDIS_ALIAS]["LOCATION"] = url
    monkeypatch.setattr(UserRateThrottle, "timer", lambda self: FIXED_NOW)
    # This process's unsent counts start empty, as in a freshly forked worker.
    monkeypatch.setattr(throttling, "window_counters", WindowCounters())
    try:
        with override_settings(REDIS_URL=url, CACHES=caches):
            yield redis.Redis(port=port, decode_responses=True)
    finally:
        stop_redis(process)


def command_counts(client: redis.Redis) -> dict[str, int]:
    return {
        name.removeprefix("cmdstat_"): stats["calls"]
        for name, stats in client.info("commandstats").items()
    }


def commands_during(client: redis.Redis, action) -> tuple[dict[str, int], object]:
    """Run `action`; return the Redis commands it sent and its result."""
    before = command_counts(client)
    result = action()
    after = command_counts(client)
    after["info"] -= 1  # the INFO that took `before`
    delta = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in delta.items() if v}, result


def warm_then_measure(private_redis: redis.Redis, request) -> tuple:
    """Send `request` twice: the first warms the token cache, the rate window and
    the gate; return its answer, then the SQL, Redis commands and answer of the
    second."""
    first = request()
    with CaptureQueriesContext(connection) as queries:
        commands, second = commands_during(private_redis, request)
    return first, [q["sql"] for q in queries.captured_queries], commands, second


@pytest.fixture
def reservation_cost(private_redis, user, make_product):
    """Reserve one unit of a product with `on_hand` units (its gate warm), twice;
    return the product and what warm_then_measure returns."""

    def cost(*, on_hand: int) -> tuple:
        product = make_product(on_hand=on_hand)
        gate.gate_warm(sku=product.sku, available=on_hand)
        client = token_client(user)
        body = {"sku": product.sku, "quantity": 1}
        request = partial(client.post, "/api/v1/reservations/", body, format="json")
        return product, *warm_then_measure(private_redis, request)

    return cost


def test_warm_product_gets_cost_one_query_each_and_one_redis_command_per_batch(
    private_redis, user, make_product
) -> None:
    product = make_product(on_hand=7)
    client = token_client(user)
    url = f"/api/v1/products/{product.sku}/"
    batch = batch_size(UserRateThrottle().num_requests)
    assert batch > 1  # the default user rate is batched
    measured = 2 * batch
    # Warms the token cache; a window's first request is added to Redis at once.
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        commands, responses = commands_during(
            private_redis, lambda: [client.get(url) for _ in range(measured)]
        )
    queries = [q["sql"] for q in captured.captured_queries]

    assert [response.status_code for response in responses] == [200] * measured
    assert responses[-1].json() == {
        "sku": product.sku,
        "name": product.name,
        "active": True,
        "on_hand": 7,
        "reserved": 0,
        "available": 7,
    }
    assert [sql.split()[0] for sql in queries] == ["SELECT"] * measured
    assert not any("authtoken" in sql for sql in queries)
    # The per-user rate window: one INCRBY per batch, and the shared count is exact.
    assert commands == {"incrby": 2}
    (window_key,) = private_redis.keys(f"*throttle_user_{user.pk}:*")
    assert int(private_redis.get(window_key)) == 1 + measured


def test_refused_reservation_on_sold_out_sku_costs_no_query_and_one_redis_read(
    reservation_cost,
) -> None:
    product, first, queries, commands, response = reservation_cost(on_hand=0)

    assert (first.status_code, response.status_code) == (409, 409)
    assert response.json()["error"]["details"] == {
        "sku": product.sku,
        "requested": 1,
        "available": 0,
    }
    assert queries == []
    # The gate's counter read, no script for a refusal; the rate window's count
    # waits for its batch.
    assert commands == {"get": 1}


def test_accepted_reservation_query_count_is_pinned(
    reservation_cost, private_redis
) -> None:
    product, first, queries, commands, response = reservation_cost(on_hand=5)

    assert (first.status_code, response.status_code) == (201, 201)
    statements = [sql.split()[0] for sql in queries]
    # Product, the owner's lock (with the database clock) and held units, the
    # reservation and its ledger row, then the stock update: the stock row, which
    # every buyer of the SKU queues on, is locked last. (Outside a test's own
    # transaction, BEGIN and COMMIT around the last five; test_api's pinned count
    # sees those.)
    assert statements == ["SELECT", "SELECT", "SELECT", "INSERT", "INSERT", "UPDATE"]
    assert "inventory_stock" in queries[-1]
    # Counter read, then the take script (its GET and DECRBY); the rate window's
    # count waits for its batch.
    assert commands == {"get": 2, "eval": 1, "decrby": 1}
    assert int(private_redis.get(gate.gate_key(product.sku))) == 3
