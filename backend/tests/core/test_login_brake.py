"""Password logins are braked per account and per client IP; passwords are
validated."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import Client, override_settings

from tests.support.net import free_port

pytestmark = pytest.mark.django_db

PASSWORD = "a long and uncommon admin passphrase 7"
LOGIN_URL = "/admin/login/"


@pytest.fixture(autouse=True)
def _plain_static_files(settings) -> None:
    # Admin pages link static files; the tests run without collectstatic's manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }


@pytest.fixture(autouse=True)
def _fresh_brake():
    cache.delete_many(_brake_keys())
    yield
    cache.delete_many(_brake_keys())


def _admin(username: str):
    return get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=True, is_superuser=True
    )


def _login(username: str, password: str, ip: str = "203.0.113.7") -> tuple[int, bool]:
    """Post the admin's login form; return the status and whether it logged in."""
    client = Client(REMOTE_ADDR=ip)
    response = client.post(
        LOGIN_URL,
        {"username": username, "password": password, "next": "/admin/"},
    )
    return response.status_code, "_auth_user_id" in client.session


@override_settings(LOGIN_FAILURE_LIMIT=3, LOGIN_FAILURE_LIMIT_PER_IP=100)
def test_wrong_admin_passwords_lock_the_account_even_for_the_right_one() -> None:
    _admin("root")
    wrong = [_login("root", f"guess-{n}") for n in range(3)]
    assert wrong == [(200, False)] * 3
    # Locked: the right password is refused too, from any address.
    assert _login("root", PASSWORD) == (429, False)
    assert _login("root", PASSWORD, ip="198.51.100.9") == (429, False)
    client = Client(REMOTE_ADDR="198.51.100.9")
    refused = client.post(LOGIN_URL, {"username": "root", "password": PASSWORD})
    assert "Too many failed logins" in refused.content.decode()
    # Another account is not locked by this one's failures.
    _admin("other")
    assert _login("other", PASSWORD) == (302, True)
    # The window over (its counter gone), the right password logs in again.
    cache.delete_many(_brake_keys())
    assert _login("root", PASSWORD) == (302, True)


@override_settings(LOGIN_FAILURE_LIMIT=100, LOGIN_FAILURE_LIMIT_PER_IP=4)
def test_one_address_guessing_across_accounts_is_refused() -> None:
    _admin("victim")
    # Four different accounts, one wrong password each: no account is near its limit.
    assert [_login(f"user{n}", "guess") for n in range(4)] == [(200, False)] * 4
    # The address is: even the right password of a fifth account is refused.
    assert _login("victim", PASSWORD) == (429, False)
    # The same account from another address logs in.
    assert _login("victim", PASSWORD, ip="198.51.100.9") == (302, True)


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_successful_logins_are_not_counted() -> None:
    _admin("root")
    assert [_login("root", PASSWORD) for _ in range(5)] == [(302, True)] * 5
    assert _brake_keys() == []


def test_password_validators_refuse_weak_passwords() -> None:
    with pytest.raises(ValidationError) as refused:
        validate_password("1")
    assert [error.code for error in refused.value.error_list] == [
        "password_too_short",
        "password_too_common",
        "password_entirely_numeric",
    ]
    with pytest.raises(ValidationError) as common:
        validate_password("password123")
    assert [error.code for error in common.value.error_list] == ["password_too_common"]
    user = get_user_model()(username="alice.jones", email="alice.jones@example.com")
    with pytest.raises(ValidationError) as similar:
        validate_password("alice.jones1", user=user)
    assert [error.code for error in similar.value.error_list] == [
        "password_too_similar"
    ]
    validate_password(PASSWORD)


def _brake_keys() -> list[str]:
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    return sorted(
        key.decode().split(":", 2)[2]
        for key in redis.keys(cache.make_key("login-failures:*"))
    )


def test_redis_down_locks_nobody_out() -> None:
    """With the counters unknown (Redis down) nothing is refused: a cache outage
    must not lock the administrators out."""
    _admin("root")
    dead = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    with override_settings(CACHES=dead, LOGIN_FAILURE_LIMIT=1):
        assert [_login("root", "guess") for _ in range(3)] == [(200, False)] * 3
        assert _login("root", PASSWORD) == (302, True)
