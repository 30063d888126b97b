"""Client IP behind a known number of trusted proxies."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from apps.core.http.client_ip import client_ip


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        (0, "6.6.6.6", "10.0.0.2"),  # no proxy trusted: the header is ignored
        (1, "203.0.113.9", "203.0.113.9"),  # ALB appended the client
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # spoofed hop on the left
        (2, "6.6.6.6, 203.0.113.9, 10.0.0.1", "203.0.113.9"),  # CDN + ALB
        (2, "203.0.113.9", "203.0.113.9"),  # fewer hops than proxies
        (1, "", "10.0.0.2"),
    ],
)
def test_rightmost_untrusted_hop(trusted: int, forwarded: str, expected: str) -> None:
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded
    )
    assert client_ip(request, trusted_proxies=trusted) == expected


def test_drf_uses_the_same_proxy_count() -> None:
    from django.conf import settings

    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == settings.TRUSTED_PROXY_COUNT
