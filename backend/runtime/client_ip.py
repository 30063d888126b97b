"""The client's IP address behind a known number of trusted proxies, without Django.

gunicorn's access logger (runtime/gunicorn_logging.py) runs in a process that has
no request object; the Django wrapper for requests is apps/core/http/client_ip.py.
"""

from __future__ import annotations


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
