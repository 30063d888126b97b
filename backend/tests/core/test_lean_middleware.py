"""Cheaper middleware keeps its behaviour: admin messages, request metrics."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.functional import empty
from prometheus_client import REGISTRY

from apps.core.http.middleware import LazyMessageMiddleware
from tests.support.factories import token_client


def test_api_request_builds_no_message_storage(user) -> None:
    response = token_client(user).get("/api/v1/products/")
    assert response.status_code == 200
    assert response.wsgi_request._messages._wrapped is empty
    assert "messages" not in response.cookies


def test_messages_added_by_a_view_are_stored(db) -> None:
    def view(request):
        messages.success(request, "Product saved.")
        return HttpResponse("ok")

    def shown(request):
        return HttpResponse(" ".join(str(m) for m in messages.get_messages(request)))

    response = SessionMiddleware(LazyMessageMiddleware(view))(RequestFactory().get("/"))
    next_request = RequestFactory().get("/")
    next_request.COOKIES["messages"] = response.cookies["messages"].value
    page = SessionMiddleware(LazyMessageMiddleware(shown))(next_request)
    assert page.content == b"Product saved."


def test_request_metrics_are_still_counted(user, make_product) -> None:
    product = make_product()
    labels = {"status": "200", "view": "product-detail", "method": "GET"}
    name = "django_http_responses_total_by_status_view_method_total"
    before = REGISTRY.get_sample_value(name, labels) or 0
    client = token_client(user)
    for _ in range(3):
        assert client.get(f"/api/v1/products/{product.sku}/").status_code == 200
    assert REGISTRY.get_sample_value(name, labels) - before == 3


def test_client_errors_are_not_logged_twice(user, caplog) -> None:
    client = token_client(user)
    with caplog.at_level("INFO"):
        assert client.get("/api/v1/products/NO-SUCH-SKU/").status_code == 404
    assert [r for r in caplog.records if r.name == "django.request"] == []
    assert logging.getLogger("django.request").getEffectiveLevel() == logging.ERROR
