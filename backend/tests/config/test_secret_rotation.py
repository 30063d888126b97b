"""Rotating DJANGO_SECRET_KEY and METRICS_TOKEN without logging everyone out or
leaving Prometheus a scrape gap: the old value keeps working while it is listed as
previous (DJANGO_SECRET_KEY_FALLBACKS, METRICS_TOKEN_PREVIOUS), and stops once it
is removed."""

from __future__ import annotations

import pytest
import requests
from django.conf import settings
from django.core import signing
from django.test import Client, override_settings

from tests.support import factories
from tests.support.env import PRODUCTION_ENV, UNREACHED_REDIS_URL, clean_environ
from tests.support.net import free_port
from tests.support.observability import worker_metrics
from tests.support.processes import run_python
from tests.support.wait import wait_until

OLD_KEY = "old-" + "Qm8r" * 15
NEW_KEY = "new-" + "Zt4w" * 15
PRODUCTS = "/api/v1/products/"
OLD_TOKEN = "metrics-old-" + "o" * 20
NEW_TOKEN = "metrics-new-" + "n" * 20

VERIFY = """
import django; django.setup()
from django.core import signing
try:
    print(signing.loads({token!r}, salt="rotation"))
except signing.BadSignature:
    print("BadSignature")
"""


def _verify_in_a_fresh_process(token: str, **keys: str) -> str:
    env = clean_environ(
        **{
            **PRODUCTION_ENV,
            "DATABASE_URL": "postgres://app@db.invalid/app",
            "REDIS_URL": UNREACHED_REDIS_URL,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **keys,
        }
    )
    result = run_python(["-c", VERIFY.format(token=token)], env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_signed_value_verifies_during_the_rotation_and_not_after() -> None:
    """DJANGO_SECRET_KEY_FALLBACKS reaches Django's SECRET_KEY_FALLBACKS."""
    with override_settings(SECRET_KEY=OLD_KEY):
        token = signing.dumps({"order": 1001}, salt="rotation")
    before = _verify_in_a_fresh_process(token, DJANGO_SECRET_KEY=OLD_KEY)
    during = _verify_in_a_fresh_process(
        token, DJANGO_SECRET_KEY=NEW_KEY, DJANGO_SECRET_KEY_FALLBACKS=OLD_KEY
    )
    after = _verify_in_a_fresh_process(token, DJANGO_SECRET_KEY=NEW_KEY)
    assert (before, during, after) == (
        "{'order': 1001}",
        "{'order': 1001}",
        "BadSignature",
    )


@pytest.mark.django_db
def test_admin_session_survives_the_rotation_and_ends_without_the_fallback() -> None:
    """Real logins through the admin under the old key. While it is a fallback, a
    session cookie made with it still authenticates, and Django re-signs that
    session with the new key; a session not used during the window is logged out
    once the fallback is removed. (Read through the API's session authentication:
    the admin's pages need collected static files.)"""
    user = factories.user_create(staff=True)
    user.set_password("Zq7wK-rotation-pass")
    user.save()
    admin = f"/{settings.ADMIN_URL}"
    active, idle = Client(), Client()
    with override_settings(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[]):
        for client in (active, idle):
            login = client.post(
                f"{admin}login/?next={admin}",
                {"username": user.username, "password": "Zq7wK-rotation-pass"},
            )
            assert (login.status_code, login["Location"]) == (302, admin)
            assert client.get(PRODUCTS).status_code == 200
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]):
        assert active.get(PRODUCTS).status_code == 200
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[]):
        assert active.get(PRODUCTS).status_code == 200
        logged_out = idle.get(PRODUCTS)
        assert (logged_out.status_code, logged_out.json()["error"]["code"]) == (
            401,
            "not_authenticated",
        )


def _scrape(url: str, token: str) -> int:
    return requests.get(
        url, headers={"Authorization": f"Bearer {token}"}, timeout=5
    ).status_code


@pytest.mark.slow
def test_web_metrics_accept_the_previous_token_only_while_it_is_set(
    start_gunicorn,
) -> None:
    rotating = start_gunicorn(METRICS_TOKEN=NEW_TOKEN, METRICS_TOKEN_PREVIOUS=OLD_TOKEN)
    url = rotating.base_url + "/metrics"
    assert [_scrape(url, t) for t in (NEW_TOKEN, OLD_TOKEN, "metrics-other")] == [
        200,
        200,
        403,
    ]
    rotated = start_gunicorn(METRICS_TOKEN=NEW_TOKEN)
    url = rotated.base_url + "/metrics"
    assert [_scrape(url, t) for t in (NEW_TOKEN, OLD_TOKEN)] == [200, 403]


@pytest.mark.slow
def test_worker_metrics_accept_the_previous_token_only_while_it_is_set(
    start_worker,
) -> None:
    port = free_port()
    start_worker(
        WORKER_METRICS_PORT=str(port),
        METRICS_TOKEN=NEW_TOKEN,
        METRICS_TOKEN_PREVIOUS=OLD_TOKEN,
    )
    wait_until(lambda: worker_metrics(port, NEW_TOKEN), 20, "the metrics port")
    url = f"http://127.0.0.1:{port}/metrics"
    assert [_scrape(url, t) for t in (NEW_TOKEN, OLD_TOKEN, "metrics-other")] == [
        200,
        200,
        403,
    ]
    port = free_port()
    start_worker(WORKER_METRICS_PORT=str(port), METRICS_TOKEN=NEW_TOKEN)
    wait_until(lambda: worker_metrics(port, NEW_TOKEN), 20, "the metrics port")
    url = f"http://127.0.0.1:{port}/metrics"
    assert [_scrape(url, t) for t in (NEW_TOKEN, OLD_TOKEN)] == [200, 403]


def test_previous_metrics_token_alone_is_refused() -> None:
    from runtime.env import load

    env = {
        **PRODUCTION_ENV,
        "DATABASE_URL": "postgres://app@db.internal/app",
        "REDIS_URL": UNREACHED_REDIS_URL,
        "METRICS_TOKEN_PREVIOUS": OLD_TOKEN,
    }
    assert [(p.name, p.message) for p in load(env).problems] == [
        ("METRICS_TOKEN_PREVIOUS", "is set without METRICS_TOKEN")
    ]


def test_fallback_keys_are_held_to_the_secret_key_rule() -> None:
    from runtime.env import load

    env = {
        **PRODUCTION_ENV,
        "DATABASE_URL": "postgres://app@db.internal/app",
        "REDIS_URL": UNREACHED_REDIS_URL,
        "DJANGO_SECRET_KEY_FALLBACKS": f"{OLD_KEY},change-me",
    }
    assert [(p.name, p.message) for p in load(env).problems] == [
        ("DJANGO_SECRET_KEY_FALLBACKS", "entry 2 is a known placeholder, not a secret")
    ]
