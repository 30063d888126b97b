"""Paging: a capped page size, and 400 for a malformed limit or offset."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(client_for, user):
    return client_for(user)


@pytest.fixture
def products(make_product):
    return [make_product(on_hand=1, sku=f"PAGE-{n:03d}") for n in range(102)]


def test_page_size_is_capped_at_100(client, products) -> None:
    page = client.get("/api/v1/products/?limit=100").json()
    assert page["count"] == 102
    assert len(page["results"]) == 100
    assert page["results"][-1]["sku"] == "PAGE-099"
    last = client.get("/api/v1/products/?limit=100&offset=100").json()
    assert [p["sku"] for p in last["results"]] == ["PAGE-100", "PAGE-101"]


def test_default_page_is_50(client, products) -> None:
    page = client.get("/api/v1/products/").json()
    assert len(page["results"]) == 50


def test_offset_past_the_end_is_an_empty_page(client, products) -> None:
    response = client.get("/api/v1/products/?offset=2147483647&limit=1")
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    "query",
    [
        "limit=100000000000000000000",
        "limit=10000000",
        "limit=101",
        "limit=0",
        "limit=-1",
        "limit=1.5",
        "limit=",
        "limit=abc",
        "limit=null",
        "offset=null",
        "offset=-1",
        "offset=1e3",
        "offset=2147483648",
        "offset=" + "9" * 5000,
        "offset=%EF%BC%91",  # a fullwidth digit: int() would take it
    ],
)
def test_malformed_limit_or_offset_is_400(client, query: str) -> None:
    response = client.get(f"/api/v1/products/?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"]["code"] == "invalid"
    assert list(body["error"]["details"]) == [query.split("=")[0]]


def test_schema_states_the_bounds(client) -> None:
    schema = client.get("/api/schema/?format=json").json()
    params = {
        p["name"]: p["schema"]
        for p in schema["paths"]["/api/v1/products/"]["get"]["parameters"]
    }
    assert params["limit"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 50,
    }
    assert params["offset"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 2147483647,
        "default": 0,
    }
