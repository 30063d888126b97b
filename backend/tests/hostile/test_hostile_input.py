"""Hostile input: every answer is a clear 4xx with the error body, never a 5xx."""

from __future__ import annotations

import json
import re
import socket

import pytest
import requests
from django.core.cache import cache
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(client_for, user):
    return client_for(user)


def _error(response) -> str:
    body = response.json()
    assert set(body) == {"error", "request_id"}
    return body["error"]["code"]


def test_oversized_body_is_413(client, settings) -> None:
    body = json.dumps({"sku": "A", "quantity": 1, "pad": "x" * 2_000_000})
    response = client.post(
        "/api/v1/reservations/", body, content_type="application/json"
    )
    assert response.status_code == 413
    assert _error(response) == "request_too_large"


def test_oversized_chunked_body_is_refused(start_gunicorn, make_user) -> None:
    from rest_framework.authtoken.models import Token

    server = start_gunicorn()
    token = Token.objects.create(user=make_user()).key

    def chunks():
        yield b'{"sku": "A", "quantity": 1, "pad": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = requests.post(
        server.base_url + "/api/v1/reservations/",
        data=chunks(),
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "X-Forwarded-Proto": "https",
        },
        timeout=10,
    )
    # Django reads no body without a Content-Length (WSGI), so the chunked upload
    # arrives empty and fails validation: 400, never a 5xx, never 2.6 MB in memory.
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert set(response.json()["error"]["details"]) == {"sku", "quantity"}


def test_deeply_nested_json_is_400(client) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(
        "/api/v1/reservations/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert _error(response) == "parse_error"


@pytest.mark.parametrize(
    "body",
    ['{"sku": "A", "quantity": 1', "{'sku': 'A'}", "null", "[]", '"text"', "\x00"],
)
def test_invalid_json_is_400(client, body: str) -> None:
    response = client.post(
        "/api/v1/reservations/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert _error(response) in {"parse_error", "invalid"}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml"],
)
def test_wrong_content_type_is_415(client, content_type: str) -> None:
    response = client.post(
        "/api/v1/reservations/", "sku=A&quantity=1", content_type=content_type
    )
    assert response.status_code == 415
    assert _error(response) == "unsupported_media_type"


@pytest.mark.parametrize(
    "quantity", [10**30, -(10**30), -1, 0, 1.5, "1e3", True, None, [], {}, "NaN"]
)
def test_huge_negative_and_odd_quantities_are_400(client, make_product, quantity):
    product = make_product(on_hand=5)
    response = client.post(
        "/api/v1/reservations/",
        {"sku": product.sku, "quantity": quantity},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert _error(response) == "invalid"
    assert client.get(f"/api/v1/products/{product.sku}/").json()["reserved"] == 0


@pytest.mark.parametrize(
    "sku",
    [
        "é",
        "SKU\u0000",
        "SKU\n1",
        "\u202eSKU",
        "x' OR 1=1 --",
        "A;DROP TABLE x",
        "A" * 65,
        "../../etc/passwd",
        "%00",
        "🙂",
    ],
)
def test_hostile_skus(client, staff, client_for, sku: str) -> None:
    reserve = client.post(
        "/api/v1/reservations/", {"sku": sku, "quantity": 1}, format="json"
    )
    assert reserve.status_code == 400
    create = client_for(staff).post(
        "/api/v1/products/", {"sku": sku, "name": "x"}, format="json"
    )
    assert create.status_code == 400
    lookup = client.get("/api/v1/products/" + requests.utils.quote(sku, safe="") + "/")
    assert lookup.status_code == 404
    assert _error(lookup) in {"product_not_found", "not_found"}


def test_unicode_names_are_stored_as_given(client_for, staff) -> None:
    name = "Café ☕ — 東京 \u202e"
    created = client_for(staff).post(
        "/api/v1/products/", {"sku": "CAFE-1", "name": name}, format="json"
    )
    assert created.status_code == 201
    assert created.json()["name"] == name


def test_brute_forced_tokens_are_throttled() -> None:
    from rest_framework.test import APIClient

    cache.delete("auth-failures:127.0.0.1")
    try:
        guesser = APIClient(REMOTE_ADDR="127.0.0.1")
        statuses = []
        with override_settings(AUTH_FAILURE_LIMIT=5):
            for attempt in range(8):
                guesser.credentials(HTTP_AUTHORIZATION=f"Token guess{attempt:035d}")
                statuses.append(guesser.get("/api/v1/products/").status_code)
            throttled = guesser.get("/api/v1/products/")
        assert statuses == [401] * 5 + [429] * 3
        assert _error(throttled) == "throttled"
        assert int(throttled["Retry-After"]) == 60
    finally:
        cache.delete("auth-failures:127.0.0.1")


def test_bad_host_is_400(client) -> None:
    response = client.get("/api/v1/products/", HTTP_HOST="evil.example.net")
    assert response.status_code == 400
    assert _error(response) == "bad_request"


# --- Through gunicorn: what reaches the logs ----------------------------------------


def raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_forged_request_id_with_newlines_never_reaches_the_log(start_gunicorn) -> None:
    server = start_gunicorn()
    port = int(server.base_url.rsplit(":", 1)[1])
    answer = raw_request(
        port,
        b"GET /nope/ HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n"
        b"X-Request-ID: forged\x0bid\x1b[31m\r\n X-Admin: yes\r\n"
        b"Connection: close\r\n\r\n",
    )
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line in {b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 404 Not Found"}
    requests.get(
        server.base_url + "/nope/", headers={"X-Forwarded-Proto": "https"}, timeout=5
    )
    server.wait_for_line(lambda line: '"path": "/nope/"' in line)
    assert not [line for line in server.lines if "forged" in line or "\x1b" in line]


def test_spoofed_forwarded_for_is_not_logged_as_the_client(start_gunicorn) -> None:
    server = start_gunicorn(TRUSTED_PROXY_COUNT="1")
    requests.get(
        server.base_url + "/nope/",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "6.6.6.6, 203.0.113.9",
            "X-Request-ID": "xff-test-000001",
        },
        timeout=5,
    )
    line = server.wait_for_line(
        lambda text: "xff-test-000001" in text and "gunicorn.access" in text
    )
    assert json.loads(line)["client_ip"] == "203.0.113.9"


def test_rate_limit_answers_429_per_user(client_for, make_user) -> None:
    from rest_framework.settings import api_settings

    from apps.core.drf.throttling import UserRateThrottle

    # The class reads its rates at import; give this test a tiny one.
    UserRateThrottle.THROTTLE_RATES = {
        **api_settings.DEFAULT_THROTTLE_RATES,
        "user": "3/minute",
    }
    user, other = make_user(), make_user()
    # User ids repeat across test databases; earlier runs' counters live in Redis.
    for someone in (user, other):
        cache.delete_pattern(f"*throttle_user_{someone.pk}:*")
    try:
        client = client_for(user)
        statuses = [client.get("/api/v1/products/").status_code for _ in range(5)]
        other_user = client_for(other).get("/api/v1/products/").status_code
        throttled = client.get("/api/v1/products/")
    finally:
        del UserRateThrottle.THROTTLE_RATES  # back to the settings' rates
    assert statuses == [200, 200, 200, 429, 429]
    assert other_user == 200
    assert throttled.json()["error"]["code"] == "throttled"
    assert 0 < int(throttled["Retry-After"]) <= 61


LIMIT = 1048576  # MAX_REQUEST_BODY_BYTES's default
UPLOAD_HEAD = (
    "POST /api/v1/reservations/ HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "Content-Type: application/json\r\n"
    "X-Forwarded-Proto: https\r\n"
)


def _answer(sock: socket.socket) -> tuple[int, dict]:
    """Read one HTTP response (Content-Length framed) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


def test_asgi_declared_oversize_is_413_before_the_body_is_sent(start_gunicorn) -> None:
    server = start_gunicorn(GUNICORN_WORKER_CLASS="uvicorn")
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # 50 MB declared, not one byte sent: Django's ASGI handler would wait to
        # spool it all first (no answer within the timeout).
        sock.sendall((UPLOAD_HEAD + "Content-Length: 50000000\r\n\r\n").encode())
        status, body = _answer(sock)
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    server.wait_for_line(lambda line: "request body refused unread" in line)


def test_asgi_streamed_oversize_is_413_with_at_most_the_limit_read(
    start_gunicorn,
) -> None:
    server = start_gunicorn(GUNICORN_WORKER_CLASS="uvicorn")
    port = int(server.base_url.rsplit(":", 1)[1])
    piece = b"x" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((UPLOAD_HEAD + "Transfer-Encoding: chunked\r\n\r\n").encode())
        # One chunk more than the limit holds, and no end: the refusal must come
        # from counting, not from the body's end.
        for _ in range(LIMIT // len(piece) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        status, body = _answer(sock)
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    line = server.wait_for_line(lambda line: "refused while streaming" in line)
    passed = json.loads(line)["body_bytes_passed"]
    # uvicorn hands the body on in pieces of its own reads: what reached Django
    # stopped at the piece that would have crossed the limit.
    assert LIMIT // 2 < passed <= LIMIT
