"""`manage.py restore_resync`: Redis brought back into agreement with a restored
database, run as an operator runs it (a process), against a Redis that outlived
the database and so holds counters of another state."""

from __future__ import annotations

import re

import requests
from rest_framework.authtoken.models import Token

from apps.inventory import gate
from apps.inventory.models import Reservation
from apps.inventory.services import reservation_create
from tests.support import factories
from tests.support.processes import run_python

HOSTS = {"Host": "localhost", "X-Forwarded-Proto": "https"}


def test_resync_re_derives_counters_flushes_tokens_and_expires_overdue(
    production_env, start_gunicorn, make_product, user, redis_client
) -> None:
    gate.gate_counters_clear()  # counters other tests left in the run's Redis
    sold = make_product(on_hand=10)
    pending = reservation_create(owner=user, sku=sold.sku, quantity=3).reservation
    other = make_product(on_hand=5)
    overdue = factories.reservation_expired(
        owner=user, product=other, quantity=2, number=1
    )
    # The restored database's truth: 7 and 3 available. Redis says otherwise: units
    # sold after the backup, cancellations after it, a product the backup lacks.
    redis_client.set(gate.gate_key(sold.sku), 2)
    redis_client.set(gate.gate_key(other.sku), 99)
    redis_client.set(gate.gate_key("MADE-AFTER-BACKUP"), 4)

    # A web process verified this token before the restore, which lacks it (deleted
    # outside the app: no revocation message), and keeps accepting it from its cache.
    # One process: the cache is per process.
    web = start_gunicorn(AUTH_TOKEN_CACHE_SECONDS="300", GUNICORN_WORKERS="1")
    token, _ = Token.objects.get_or_create(user=user)
    headers = {**HOSTS, "Authorization": f"Token {token.key}"}
    products = f"{web.base_url}/api/v1/products/"
    assert requests.get(products, headers=headers, timeout=10).status_code == 200
    Token.objects.filter(user=user).update(key="0" * 40)
    assert requests.get(products, headers=headers, timeout=10).status_code == 200

    result = run_python(["manage.py", "restore_resync"], env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    # Its own lines; the JSON log lines of the services go to the same stream.
    lines = [line for line in result.stdout.splitlines() if not line.startswith("{")]
    assert len(lines) == 4, result.stdout
    assert lines[0] == (
        "gate counters: 3 removed, 2 re-derived from PostgreSQL; 0 of 2 active "
        "products without one"
    )
    assert lines[1] == "token caches: flushed in every web process"
    assert lines[2] == "reservations past their deadline, expired now: 1"
    assert re.fullmatch(
        r"reservations pending: 1 \(3 units\), next deadline \S+; beat's expiry "
        r"sweep releases each at its deadline",
        lines[3],
    ), lines[3]
    assert pending.expires_at.isoformat() in lines[3]

    assert redis_client.get(gate.gate_key(sold.sku)) == "7"
    assert redis_client.get(gate.gate_key(other.sku)) == "5"  # 3, then 2 given back
    assert redis_client.get(gate.gate_key("MADE-AFTER-BACKUP")) is None
    overdue.refresh_from_db()
    assert overdue.status == Reservation.Status.EXPIRED
    # The web process asked the database again: the token is gone.
    assert requests.get(products, headers=headers, timeout=10).status_code == 401


def test_resync_without_redis_says_so(production_env) -> None:
    """Without REDIS_URL the command refuses, naming it: in a web container the
    configuration itself refuses (web needs a broker); in the migrate role's
    (which needs none) the command says there is nothing to resync."""
    env = {k: v for k, v in production_env.items() if k != "REDIS_URL"}
    result = run_python(["manage.py", "restore_resync"], env={**env, "APP_ROLE": "web"})
    assert result.returncode == 1
    assert "REDIS_URL is missing (and CELERY_BROKER_URL too)" in result.stderr
    result = run_python(
        ["manage.py", "restore_resync"], env={**env, "APP_ROLE": "migrate"}
    )
    assert result.returncode == 1
    assert "REDIS_URL is not set: there is no Redis to resync." in result.stderr
