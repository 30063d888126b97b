"""The client's IP address behind a known number of trusted proxies."""

from django.conf import settings
from django.http import HttpRequest

from runtime.client_ip import client_ip_from


def client_ip(request: HttpRequest, *, trusted_proxies: int | None = None) -> str:
    """Return the client's IP for a Django request (see client_ip_from)."""
    count = settings.TRUSTED_PROXY_COUNT if trusted_proxies is None else trusted_proxies
    return client_ip_from(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", ""),
        trusted_proxies=count,
    )
