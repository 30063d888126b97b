"""The PostgreSQL backend: health checks only for idle connections, query metrics."""

from __future__ import annotations

import pytest
from django.db import connections
from prometheus_client import REGISTRY

from apps.core.db.base import HEALTH_CHECK_IDLE_SECONDS
from tests.support.postgres import client_connection_kill


def executed() -> float:
    labels = {"alias": "default", "vendor": "postgresql"}
    return REGISTRY.get_sample_value("django_db_execute_total", labels) or 0.0


def health_check(connection, *, idle_for: float) -> float:
    """Run the health check as a request would; return the statements it sent."""
    connection.health_check_done = False
    connection.last_used_at = connection.clock() - idle_for
    before = executed()
    connection.close_if_health_check_failed()
    return executed() - before


@pytest.mark.django_db(transaction=True)
def test_busy_connection_is_trusted_idle_one_is_checked() -> None:
    connection = connections["default"]
    connection.ensure_connection()
    assert connection.health_check_enabled
    assert health_check(connection, idle_for=0) == 0
    assert health_check(connection, idle_for=HEALTH_CHECK_IDLE_SECONDS - 0.01) == 0
    assert health_check(connection, idle_for=HEALTH_CHECK_IDLE_SECONDS) == 1
    assert connection.connection is not None  # it answered: kept


@pytest.mark.django_db(transaction=True)
def test_idle_connection_killed_by_the_server_is_replaced() -> None:
    connection = connections["default"]
    connection.ensure_connection()
    killed = connection.connection
    client_connection_kill(connection)

    health_check(connection, idle_for=HEALTH_CHECK_IDLE_SECONDS)
    assert connection.connection is None  # closed, not handed to a request
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert connection.connection is not killed


def test_a_query_counts_once_with_its_duration(db) -> None:
    labels = {"alias": "default", "vendor": "postgresql"}
    before = executed()
    observed = REGISTRY.get_sample_value(
        "django_db_query_duration_seconds_count", labels
    )
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
    assert executed() - before == 1
    after = REGISTRY.get_sample_value("django_db_query_duration_seconds_count", labels)
    assert after - observed == 1
