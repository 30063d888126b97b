"""Every log line of a request carries its id; every response carries the header."""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HTTPS = {"X-Forwarded-Proto": "https"}


def test_django_request_and_drf_error_lines_carry_the_request_id(
    start_gunicorn,
) -> None:
    server = start_gunicorn(LOG_LEVEL="INFO")
    answers = {
        "req-not-found-0001": requests.get(
            server.base_url + "/nope/",
            headers={**HTTPS, "X-Request-ID": "req-not-found-0001"},
            timeout=5,
        ),
        # DRF refuses a wrong token; django.request logs the 401 afterwards.
        "req-drf-401-00001": requests.get(
            server.base_url + "/api/v1/products/",
            headers={
                **HTTPS,
                "X-Request-ID": "req-drf-401-00001",
                "Authorization": "Token " + "0" * 40,
            },
            timeout=5,
        ),
    }
    assert answers["req-not-found-0001"].status_code == 404
    assert answers["req-drf-401-00001"].status_code == 401
    for request_id, response in answers.items():
        assert response.headers["X-Request-ID"] == request_id
        assert response.json()["request_id"] == request_id
    server.wait_for_line(lambda line: "req-drf-401-00001" in line and "access" in line)
    # 4xx answers are logged once, by the access log (django.request logs only
    # errors, whose lines carry the id through the same filter).
    django_lines = [
        record for record in server.json_lines() if record["logger"] == "django.request"
    ]
    assert django_lines == []
    request_lines = [
        record
        for record in server.json_lines()
        if record["logger"] in {"django.request", "gunicorn.access"}
    ]
    assert len(request_lines) == 2
    assert {record["request_id"] for record in request_lines} == set(answers)


@pytest.mark.parametrize("path", ["/health/", "/health/ready/", "/metrics"])
def test_probe_and_metrics_responses_carry_the_request_id(
    start_gunicorn, path: str
) -> None:
    server = start_gunicorn(METRICS_TOKEN="m" * 40)
    given = requests.get(
        server.base_url + path, headers={"X-Request-ID": "probe-id-00001"}, timeout=5
    )
    assert given.headers["X-Request-ID"] == "probe-id-00001"
    made = requests.get(server.base_url + path, timeout=5)
    assert len(made.headers["X-Request-ID"]) == 32
