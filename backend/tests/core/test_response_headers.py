"""Answers an attacker or a cache sees: JSON errors on probe paths, no-store on the
API, a Content-Security-Policy on the admin."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.support.http import error_body

pytestmark = pytest.mark.django_db

ADMIN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@pytest.mark.parametrize("path", ["/health/", "/health/ready/", "/metrics"])
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_unsafe_methods_on_probe_paths_get_the_json_error_body(
    path: str, method: str, settings
) -> None:
    """Not Django's HTML CSRF page: a 405 in the project's JSON error body."""
    settings.METRICS_TOKEN = "m" * 32
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)(path, HTTP_X_REQUEST_ID="probe-post-0001")
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == "GET, HEAD"
    assert response.json() == error_body(
        code="method_not_allowed",
        message="Method not allowed.",
        request_id="probe-post-0001",
    )


def test_authenticated_api_responses_are_not_stored(
    client_for, user, make_product
) -> None:
    product = make_product()
    client = client_for(user)
    for response in (
        client.get("/api/v1/products/"),
        client.get(f"/api/v1/products/{product.sku}/"),
        client.post(
            "/api/v1/reservations/", {"sku": product.sku, "quantity": 1}, format="json"
        ),
        client.get("/api/v1/products/NO-SUCH-SKU/"),
    ):
        assert response.status_code in {200, 201, 404}
        assert response["Cache-Control"] == "no-store, private"


def test_admin_pages_carry_a_content_security_policy(settings) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }
    login = Client().get("/admin/login/")
    assert login.status_code == 200
    assert login["Content-Security-Policy"] == ADMIN_CSP
    redirect = Client().get("/admin/")
    assert redirect.status_code == 302
    assert redirect["Content-Security-Policy"] == ADMIN_CSP
    # The API's JSON has no CSP of its own to carry.
    assert "Content-Security-Policy" not in Client().get("/health/")
