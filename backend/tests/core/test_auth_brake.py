"""The token-guessing brake refuses failures only, never valid credentials."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

BRAKE_KEY = "auth-failures:127.0.0.1"


@pytest.fixture(autouse=True)
def _fresh_brake():
    cache.delete(BRAKE_KEY)
    yield
    cache.delete(BRAKE_KEY)


def _guess(times: int) -> list[int]:
    guesser = APIClient(REMOTE_ADDR="127.0.0.1")
    statuses = []
    for attempt in range(times):
        guesser.credentials(HTTP_AUTHORIZATION=f"Token guess{attempt:035d}")
        statuses.append(guesser.get("/api/v1/products/").status_code)
    return statuses


@override_settings(AUTH_FAILURE_LIMIT=3)
def test_valid_token_and_session_work_while_guessing_is_refused(
    client_for, make_user
) -> None:
    # A colleague behind the same address, verified before the guessing started.
    colleague = client_for(make_user())
    assert (
        colleague.get("/api/v1/products/", REMOTE_ADDR="127.0.0.1").status_code == 200
    )
    assert _guess(5) == [401, 401, 401, 429, 429]

    # Same address, verified token: served.
    assert (
        colleague.get("/api/v1/products/", REMOTE_ADDR="127.0.0.1").status_code == 200
    )
    # Same address, valid session: served.
    session = APIClient(REMOTE_ADDR="127.0.0.1")
    session.force_login(make_user())
    assert session.get("/api/v1/products/").status_code == 200
    # The guessing stays refused, and the valid calls did not reset the count;
    # refused guesses past the limit are not even looked up (nor counted).
    assert _guess(1) == [429]
    assert cache.get(BRAKE_KEY) == 4


@override_settings(AUTH_FAILURE_LIMIT=3)
def test_braked_client_is_refused_before_the_database_lookup() -> None:
    """A braked IP's further guesses cost no database query."""
    assert _guess(4) == [401, 401, 401, 429]
    guesser = APIClient(REMOTE_ADDR="127.0.0.1")
    guesser.credentials(HTTP_AUTHORIZATION="Token " + "f" * 40)
    with CaptureQueriesContext(connection) as queries:
        response = guesser.get("/api/v1/products/")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert [query["sql"] for query in queries.captured_queries] == []


@override_settings(AUTH_FAILURE_LIMIT=3)
def test_valid_requests_do_not_count(client_for, make_user) -> None:
    client = client_for(make_user())
    for _ in range(10):
        assert (
            client.get("/api/v1/products/", REMOTE_ADDR="127.0.0.1").status_code == 200
        )
    assert cache.get(BRAKE_KEY) is None
    assert _guess(3) == [401, 401, 401]
