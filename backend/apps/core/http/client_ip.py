"""The client's IP address behind a known number of trusted proxies."""

from django.conf import settings
from django.http import HttpRequest


def client_ip_from(
    *, remote_addr: str, forwarded_for: str, trusted_proxies: int
) -> str:
    """Return the right-most X-Forwarded-For hop not added by a trusted proxy.

    Each trusted proxy appends the address it received the connection from, so with
    N trusted proxies the client is the N-th entry from the right. Entries further
    left are whatever the client chose to send and are never trusted.
    """
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if trusted_proxies <= 0 or not hops:
        return remote_addr
    return hops[-min(trusted_proxies, len(hops))]


def client_ip(request: HttpRequest, *, trusted_proxies: int | None = None) -> str:
    """Return the client's IP for a Django request (see client_ip_from)."""
    count = settings.TRUSTED_PROXY_COUNT if trusted_proxies is None else trusted_proxies
    return client_ip_from(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", ""),
        trusted_proxies=count,
    )
