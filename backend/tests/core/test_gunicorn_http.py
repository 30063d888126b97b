"""The web role through a real gunicorn process with the shipped configuration."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.support.net import free_port

pytestmark = pytest.mark.slow
HTTPS = {"X-Forwarded-Proto": "https"}


def get(server, path: str, headers: dict[str, str]) -> requests.Response:
    """GET a path of the server as a client sends it: redirects are not followed."""
    return requests.get(
        server.base_url + path, headers=headers, allow_redirects=False, timeout=5
    )


def test_security_headers_and_https_redirect(start_gunicorn) -> None:
    server = start_gunicorn()
    plain = get(server, "/api/", {"Host": "api.example.com"})
    assert plain.status_code == 301
    assert plain.headers["Location"] == "https://api.example.com/api/"

    secure = get(server, "/nope/", {"Host": "api.example.com", **HTTPS})
    assert secure.status_code == 404
    assert secure.json()["error"]["code"] == "not_found"
    headers = secure.headers
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_probes_answer_any_host_over_plain_http(start_gunicorn) -> None:
    server = start_gunicorn()
    live = get(server, "/health/", {"Host": "10.0.3.7"})
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = get(server, "/health/ready/", {"Host": "10.0.3.7"})
    body = ready.json()
    assert (ready.status_code, body["status"]) == (200, "ok"), body
    assert body["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok"}

    other = requests.get(
        server.base_url + "/api/", headers={"Host": "10.0.3.7", **HTTPS}, timeout=5
    )
    assert other.status_code == 400
    assert other.json()["error"]["code"] == "bad_request"


def test_probes_are_not_logged_at_info(start_gunicorn) -> None:
    server = start_gunicorn()
    requests.get(server.base_url + "/health/ready/", timeout=5)
    requests.get(server.base_url + "/nope/", headers=HTTPS, timeout=5)
    server.wait_for_line(lambda line: '"path": "/nope/"' in line)
    paths = [
        r.get("path") for r in server.json_lines() if r["logger"] == "gunicorn.access"
    ]
    assert "/health/" not in paths
    assert "/health/ready/" not in paths


def test_ready_is_503_within_2s_when_database_port_is_closed(start_gunicorn) -> None:
    closed = free_port()
    server = start_gunicorn(DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed}/x")
    started = time.monotonic()
    ready = requests.get(server.base_url + "/health/ready/", timeout=5)
    elapsed = time.monotonic() - started
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "failed"
    assert elapsed < 2.0
    live = requests.get(server.base_url + "/health/", timeout=5)
    assert live.status_code == 200


def test_ready_is_degraded_when_redis_port_is_closed(start_gunicorn) -> None:
    server = start_gunicorn(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    ready = requests.get(server.base_url + "/health/ready/", timeout=5)
    assert time.monotonic() - started < 2.0
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "ok", "migrations": "ok", "redis": "failed"}


def test_request_id_echoed_replaced_and_logged(start_gunicorn) -> None:
    server = start_gunicorn()
    sane = "req-1234abcd.upstream"
    echoed = requests.get(
        server.base_url + "/nope/", headers={"X-Request-ID": sane, **HTTPS}, timeout=5
    )
    assert echoed.headers["X-Request-ID"] == sane
    assert echoed.json()["request_id"] == sane

    insane = "bad id\twith spaces" + "x" * 300
    replaced = requests.get(
        server.base_url + "/nope/", headers={"X-Request-ID": insane, **HTTPS}, timeout=5
    )
    new_id = replaced.headers["X-Request-ID"]
    assert new_id != insane
    assert len(new_id) == 32
    assert replaced.json()["request_id"] == new_id

    line = server.wait_for_line(lambda text: sane in text and "gunicorn.access" in text)
    record = json.loads(line)
    assert record["request_id"] == sane
    assert record["path"] == "/nope/"
    assert record["status"] == 404
    assert record["method"] == "GET"
    assert {"time", "level", "logger", "message", "duration_ms", "client_ip"} <= set(
        record
    )


def test_metrics_hidden_without_token(start_gunicorn) -> None:
    server = start_gunicorn()
    response = requests.get(server.base_url + "/metrics", headers=HTTPS, timeout=5)
    assert response.status_code == 404


def test_metrics_require_the_right_bearer_token(start_gunicorn) -> None:
    token = "t" * 40
    server = start_gunicorn(METRICS_TOKEN=token)
    url = server.base_url + "/metrics"
    assert requests.get(url, headers=HTTPS, timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer " + "w" * 40, **HTTPS}
    assert requests.get(url, headers=wrong, timeout=5).status_code == 403
    right = {"Authorization": f"Bearer {token}", **HTTPS}
    # Several requests so both workers have served some; the output sums them.
    for _ in range(6):
        requests.get(server.base_url + "/nope/", headers=HTTPS, timeout=5)
    response = requests.get(url, headers=right, timeout=5)
    assert response.status_code == 200
    assert "django_http_requests_total_by_method_total" in response.text
    assert "django_db_" in response.text or "django_http_responses" in response.text


def test_metrics_scrape_by_private_address_over_plain_http(start_gunicorn) -> None:
    token = "s" * 40
    server = start_gunicorn(METRICS_TOKEN=token)
    response = requests.get(
        server.base_url + "/metrics",
        headers={"Host": "10.0.3.7:5000", "Authorization": f"Bearer {token}"},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 200
    assert (
        "health_readiness_checks_total" in response.text or "django_" in response.text
    )
    no_token = requests.get(
        server.base_url + "/metrics", headers={"Host": "10.0.3.7:5000"}, timeout=5
    )
    assert no_token.status_code == 401
