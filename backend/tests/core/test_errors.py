"""Every error answers with the project's JSON body and the request id."""

from __future__ import annotations

import logging

import pytest
from django.test import Client, override_settings

from tests.support.http import error_body

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.core.error_urls")]


@pytest.fixture
def client() -> Client:
    # raise_request_exception=False: see what a real client sees, not the exception.
    return Client(raise_request_exception=False)


@pytest.mark.parametrize("path", ["/boom/", "/api/boom/"])
def test_500_is_json_with_request_id_and_no_traceback(
    client: Client, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get(path, HTTP_X_REQUEST_ID="trace-500-abcdef")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == error_body(
        code="server_error",
        message="Internal server error.",
        request_id="trace-500-abcdef",
    )
    body = response.content.decode()
    assert "Traceback" not in body
    assert "secret detail" not in body
    # The traceback goes to the log, joined to the response by the request id.
    logged = [r for r in caplog.records if r.exc_info]
    assert logged
    assert logged[0].request_id == "trace-500-abcdef"


def test_unauthenticated_api_call_is_401_json(client: Client) -> None:
    response = client.post("/api/needs-auth/", HTTP_X_REQUEST_ID="trace-401-abcdef")
    assert response.status_code == 401
    assert response.json() == error_body(
        code="not_authenticated",
        message="Authentication credentials were not provided.",
        request_id="trace-401-abcdef",
    )


def test_unknown_path_is_404_json(client: Client) -> None:
    response = client.get("/does-not-exist/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["request_id"] == response["X-Request-ID"]


@override_settings(ALLOWED_HOSTS=["api.example.com"])
def test_bad_host_is_400_json(client: Client) -> None:
    response = client.get("/boom/", HTTP_HOST="evil.example.net")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_foreign_host_logs_one_warning_per_interval_without_traceback(
    client: Client, caplog, monkeypatch
) -> None:
    """Anyone can send a foreign Host: one WARNING a minute per process, no
    traceback, however many requests and host names."""
    now = [1000.0]
    monkeypatch.setattr("runtime.logging._monotonic", lambda: now[0], raising=False)
    for host_filter in logging.getLogger("django.security.DisallowedHost").filters:
        host_filter.reset()

    def refused() -> list[tuple[str, str, bool, object]]:
        return [
            (
                r.levelname,
                r.getMessage(),
                r.exc_info is not None,
                getattr(r, "suppressed_since_last", None),
            )
            for r in caplog.records
            if r.name == "django.security.DisallowedHost"
        ]

    with caplog.at_level(logging.INFO):
        for n in range(5):
            response = client.get("/api/v1/products/", HTTP_HOST=f"evil{n}.example")
            assert response.status_code == 400
        assert refused() == [
            (
                "WARNING",
                "Invalid HTTP_HOST header: 'evil0.example'. You may need to add "
                "'evil0.example' to ALLOWED_HOSTS.",
                False,
                0,
            )
        ]
        now[0] += 61
        assert client.get("/", HTTP_HOST="evil9.example").status_code == 400
    assert refused()[1:] == [
        (
            "WARNING",
            "Invalid HTTP_HOST header: 'evil9.example'. You may need to add "
            "'evil9.example' to ALLOWED_HOSTS.",
            False,
            4,
        )
    ]
