"""Verified tokens are reused in process, and revoked tokens stop working: at once
when the app deletes them (in any process), within AUTH_TOKEN_CACHE_SECONDS when
something else does."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from rest_framework.authtoken.models import Token

from apps.core.drf import token_cache
from tests.support.factories import token_client
from tests.support.processes import run_python


@pytest.fixture(autouse=True)
def _empty_token_cache():
    # Revocations from other processes need the listener subscribed.
    token_cache._ensure_listener()
    assert token_cache.listening.wait(timeout=10), "revocation listener not subscribed"
    token_cache.token_cache.clear()
    yield
    token_cache.token_cache.clear()


def products(client) -> int:
    return client.get("/api/v1/products/").status_code


def test_token_is_verified_once_then_served_from_the_cache(user) -> None:
    client = token_client(user)
    assert products(client) == 200
    key = Token.objects.get(user=user).key
    cached_user, cached_token = token_cache.token_cache.get(key)
    assert (cached_user.pk, cached_token.key) == (user.pk, key)


def statuses_around(user, on_commit, revoke) -> tuple[int, int]:
    """A token client's status before and after `revoke` committed (on_commit is
    pytest-django's django_capture_on_commit_callbacks)."""
    client = token_client(user)
    before = products(client)
    with on_commit(execute=True):
        revoke()
    return before, products(client)


def test_token_deleted_through_the_app_stops_working_at_once(
    user, django_capture_on_commit_callbacks
) -> None:
    def delete_token() -> None:
        Token.objects.get(user=user).delete()

    statuses = statuses_around(user, django_capture_on_commit_callbacks, delete_token)
    assert statuses == (200, 401)


def test_deactivated_user_stops_working_at_once(
    user, django_capture_on_commit_callbacks
) -> None:
    def deactivate() -> None:
        user.is_active = False
        user.save()

    statuses = statuses_around(user, django_capture_on_commit_callbacks, deactivate)
    assert statuses == (200, 401)


def test_token_revoked_outside_the_app_stops_within_the_cache_time(
    user, monkeypatch
) -> None:
    client = token_client(user)
    now = time.monotonic()
    monkeypatch.setattr(token_cache, "clock", lambda: now)
    assert products(client) == 200
    with connection.cursor() as cursor:  # no signal: the cache cannot know
        cursor.execute("DELETE FROM authtoken_token WHERE user_id = %s", [user.pk])

    ttl = settings.AUTH_TOKEN_CACHE_SECONDS
    assert ttl == 5.0  # the documented default
    monkeypatch.setattr(token_cache, "clock", lambda: now + ttl - 0.001)
    assert products(client) == 200
    monkeypatch.setattr(token_cache, "clock", lambda: now + ttl)
    assert products(client) == 401


@override_settings(AUTH_TOKEN_CACHE_SECONDS=0)
def test_cache_time_zero_checks_the_database_every_time(user) -> None:
    client = token_client(user)
    assert products(client) == 200
    assert len(token_cache.token_cache) == 0
    Token.objects.filter(user=user).update(key="0" * 40)
    assert products(client) == 401


@pytest.mark.slow
@override_settings(AUTH_TOKEN_CACHE_SECONDS=300)
def test_token_deleted_by_another_process_is_dropped_through_redis(
    production_env, user
) -> None:
    client = token_client(user)
    key = Token.objects.get(user=user).key
    assert products(client) == 200

    result = run_python(
        [
            "manage.py",
            "shell",
            "-c",
            "from rest_framework.authtoken.models import Token;"
            f"Token.objects.get(key='{key}').delete()",
        ],
        env=production_env,
    )
    assert result.returncode == 0, result.stderr

    deadline = time.monotonic() + 10
    while token_cache.token_cache.get(key) is not None:
        assert time.monotonic() < deadline, "revocation never arrived"
        time.sleep(0.02)
    assert products(client) == 401
