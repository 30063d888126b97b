"""Readiness: a public answer without details, reused for a second per process."""

from __future__ import annotations

import json

import pytest
import requests
from django.test import RequestFactory

from apps.core.http import readiness
from tests.support.net import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stepped_clock(monkeypatch):
    """Replace the probe's clock with one the test moves."""
    now = [1000.0]
    monkeypatch.setattr(readiness, "_clock", lambda: now[0])
    monkeypatch.setattr(readiness, "_last_results", None)
    return now


@pytest.fixture
def counted_checks(monkeypatch):
    """Count real database checks (the check itself still runs against PostgreSQL)."""
    calls = []
    real = readiness._check_database

    def counted() -> None:
        calls.append(1)
        real()

    monkeypatch.setattr(readiness, "_check_database", counted)
    return calls


def _probe() -> tuple[int, dict]:
    response = readiness.readiness(RequestFactory().get("/health/ready/"))
    return response.status_code, json.loads(response.content)


def test_a_flood_of_probes_costs_one_check_per_second(
    stepped_clock, counted_checks
) -> None:
    answers = [_probe() for _ in range(50)]
    assert counted_checks == [1]
    assert (
        answers
        == [
            (
                200,
                {
                    "status": "ok",
                    "checks": {"database": "ok", "migrations": "ok", "redis": "ok"},
                },
            )
        ]
        * 50
    )
    stepped_clock[0] += 0.9
    _probe()
    assert len(counted_checks) == 1
    stepped_clock[0] += 0.2  # 1.1 s after the first round
    _probe()
    _probe()
    assert len(counted_checks) == 2


@pytest.mark.slow
def test_public_body_names_no_host_user_or_error(start_gunicorn) -> None:
    closed = free_port()
    server = start_gunicorn(
        DATABASE_URL=f"postgres://secretuser@127.0.0.1:{closed}/secretdb"
    )
    ready = requests.get(server.base_url + "/health/ready/", timeout=5)
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "failed", "migrations": "failed", "redis": "ok"},
    }
    for secret in (str(closed), "secretuser", "secretdb", "127.0.0.1", "Error"):
        assert secret not in ready.text
    # The operator still learns why, from the log, with the request's id.
    line = server.wait_for_line(lambda text: "readiness checks failed" in text)
    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["request_id"] == ready.headers["X-Request-ID"]
    assert set(record["failed_checks"]) == {"database", "migrations"}
    assert "OperationalError" in record["failed_checks"]["database"]["error"]
    assert str(closed) in record["failed_checks"]["database"]["error"]
