"""The inventory HTTP API: statuses, bodies, permissions and pinned query counts."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db(transaction=True)


def test_product_create_is_staff_only(client_for, user, staff) -> None:
    body = {"sku": "WIDGET-1", "name": "Widget"}
    denied = client_for(user).post("/api/v1/products/", body, format="json")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied"
    created = client_for(staff).post("/api/v1/products/", body, format="json")
    assert created.status_code == 201
    assert created.json() == {
        "sku": "WIDGET-1",
        "name": "Widget",
        "active": True,
        "on_hand": 0,
        "reserved": 0,
        "available": 0,
    }
    again = client_for(staff).post("/api/v1/products/", body, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "product_exists"


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "bad sku", "name": "x"},
        {"sku": "", "name": "x"},
        {"sku": "A" * 65, "name": "x"},
        {"sku": "OK"},
    ],
)
def test_product_create_validation(client_for, staff, body) -> None:
    response = client_for(staff).post("/api/v1/products/", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_restock_and_read(client_for, staff, user, make_product) -> None:
    product = make_product(on_hand=0)
    url = f"/api/v1/products/{product.sku}/restock/"
    assert client_for(user).post(url, {"quantity": 5}, format="json").status_code == 403
    for bad in (0, -1, "x", 10**7):
        response = client_for(staff).post(url, {"quantity": bad}, format="json")
        assert response.status_code == 400, bad
    response = client_for(staff).post(url, {"quantity": 5}, format="json")
    assert response.status_code == 200
    assert response.json()["on_hand"] == 5
    detail = client_for(user).get(f"/api/v1/products/{product.sku}/")
    assert detail.json()["available"] == 5
    assert client_for(user).get("/api/v1/products/NOPE/").status_code == 404


def test_reservation_lifecycle(client_for, user, staff, make_product) -> None:
    product = make_product(on_hand=3)
    client = client_for(user)
    created = client.post(
        "/api/v1/reservations/", {"sku": product.sku, "quantity": 2}, format="json"
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "sku", "quantity", "status", "expires_at"}
    assert (body["sku"], body["quantity"], body["status"]) == (product.sku, 2, "active")
    refused = client.post(
        "/api/v1/reservations/", {"sku": product.sku, "quantity": 2}, format="json"
    )
    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "code": "insufficient_stock",
        "message": "Not enough stock available.",
        "details": {"sku": product.sku, "requested": 2, "available": 1},
    }
    url = f"/api/v1/reservations/{body['id']}/"
    assert client.get(url).json()["status"] == "active"
    # Owning a reservation does not make its owner the seller.
    refused = client.post(url + "confirm/")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    confirmer = client_for(staff)
    confirmed = confirmer.post(url + "confirm/")
    assert (confirmed.status_code, confirmed.json()["status"]) == (200, "confirmed")
    again = confirmer.post(url + "confirm/")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "reservation_not_active"
    assert client.post(url + "cancel/").status_code == 409
    product_body = client.get(f"/api/v1/products/{product.sku}/").json()
    assert (product_body["on_hand"], product_body["reserved"]) == (1, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "X", "quantity": 0},
        {"sku": "X", "quantity": 1001},
        {"sku": "X", "quantity": -5},
        {"sku": "X", "quantity": "many"},
        {"sku": "X", "quantity": 1, "ttl_seconds": 29},
        {"sku": "X", "quantity": 1, "ttl_seconds": 3601},
        {"quantity": 1},
    ],
)
def test_reservation_validation(client_for, user, body) -> None:
    response = client_for(user).post("/api/v1/reservations/", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_unknown_sku_is_404(client_for, user) -> None:
    response = client_for(user).post(
        "/api/v1/reservations/", {"sku": "NOPE", "quantity": 1}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "product_not_found"


def test_idempotency_key_over_http(client_for, user, make_product) -> None:
    product = make_product(on_hand=5)
    client = client_for(user)
    body = {"sku": product.sku, "quantity": 1}
    first = client.post(
        "/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    replay = client.post(
        "/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    mismatch = client.post(
        "/api/v1/reservations/",
        {**body, "quantity": 2},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["code"] == "idempotency_key_reused"
    bad_key = client.post(
        "/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="a b"
    )
    assert bad_key.status_code == 400
    assert client.get(f"/api/v1/products/{product.sku}/").json()["reserved"] == 1


def test_other_users_reservation_is_404(client_for, user, make_user, make_product):
    product = make_product(on_hand=5)
    created = client_for(user).post(
        "/api/v1/reservations/", {"sku": product.sku, "quantity": 1}, format="json"
    )
    url = f"/api/v1/reservations/{created.json()['id']}/"
    stranger = client_for(make_user())
    assert stranger.get(url).status_code == 404
    # Not a confirmer: refused before any lookup, so nothing says the id exists.
    assert stranger.post(url + "confirm/").status_code == 403
    assert stranger.post(url + "cancel/").status_code == 404
    assert (
        client_for(user).get(f"/api/v1/reservations/{uuid.uuid4()}/").status_code == 404
    )


def test_unauthenticated_is_401(make_product) -> None:
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v1/products/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_schema_describes_every_endpoint(client) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) == {
        "/api/v1/products/",
        "/api/v1/products/{sku}/",
        "/api/v1/products/{sku}/restock/",
        "/api/v1/reservations/",
        "/api/v1/reservations/{reservation_id}/",
        "/api/v1/reservations/{reservation_id}/confirm/",
        "/api/v1/reservations/{reservation_id}/cancel/",
    }
    create = paths["/api/v1/reservations/"]["post"]["responses"]
    assert {"201", "400", "404", "409", "422"} <= set(create)


def count_queries(call) -> tuple[object, int]:
    with CaptureQueriesContext(connection) as captured:
        result = call()
    return result, len(captured.captured_queries)


def test_pinned_query_counts(client_for, user, staff, make_product) -> None:
    product = make_product(on_hand=50)
    for _ in range(3):
        make_product(on_hand=1)
    client = client_for(user)
    client.get("/api/v1/products/")  # warms the token cache: no token query below

    # select product with stock (1)
    _, detail = count_queries(lambda: client.get(f"/api/v1/products/{product.sku}/"))
    assert detail == 1
    # count + page with stock joined (no N+1 over 4 products)
    _, listing = count_queries(lambda: client.get("/api/v1/products/"))
    assert listing == 2
    body = {"sku": product.sku, "quantity": 1}
    # product, BEGIN, owner lock, owner's held units, conditional UPDATE,
    # INSERT reservation, INSERT ledger, COMMIT
    response, create = count_queries(
        lambda: client.post("/api/v1/reservations/", body, format="json")
    )
    assert response.status_code == 201
    assert create == 8
    url = f"/api/v1/reservations/{response.json()['id']}/"
    # Sold out in the gate: refused by Redis, nothing reaches the database.
    from tests.support.gate import gate_counter_corrupt

    gate_counter_corrupt(sku=product.sku, expected=49, value=0)
    refused, sold_out = count_queries(
        lambda: client.post("/api/v1/reservations/", body, format="json")
    )
    assert refused.status_code == 409
    assert sold_out == 0
    _, get_one = count_queries(lambda: client.get(url))
    assert get_one == 1
    # The confirmer (staff): BEGIN, lock the row, UPDATE stock, UPDATE reservation,
    # INSERT ledger, COMMIT
    confirmer = client_for(staff)
    confirmer.get("/api/v1/products/")  # warms the token cache
    _, confirm = count_queries(lambda: confirmer.post(url + "confirm/"))
    assert confirm == 6
