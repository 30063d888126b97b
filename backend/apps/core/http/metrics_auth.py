"""Who may read metrics: the same rule for web's /metrics and the worker's port.

Django-free: the worker serves its metrics from a plain WSGI server in its main
process.
"""

from __future__ import annotations

import hmac
from typing import NamedTuple


class Refusal(NamedTuple):
    status: int
    code: str
    message: str


def metrics_refusal(
    *, token: str | None, authorization: str, previous: str | None = None
) -> Refusal | None:
    """Return why a scrape with this Authorization header is refused, or None.

    `previous` (METRICS_TOKEN_PREVIOUS) is the token being rotated out: accepted
    as well, so Prometheus keeps scraping while its token file changes.
    """
    if not token:
        # No token configured: the endpoint does not exist for anyone.
        return Refusal(404, "not_found", "Not found.")
    if not authorization.startswith("Bearer "):
        return Refusal(401, "not_authenticated", "Bearer token required.")
    offered = authorization.removeprefix("Bearer ").encode()
    # Compare with every accepted token, not stopping at a match: the time taken
    # says nothing about which one was offered.
    matches = [
        hmac.compare_digest(offered, accepted.encode())
        for accepted in (token, previous)
        if accepted
    ]
    if not any(matches):
        return Refusal(403, "permission_denied", "Invalid metrics token.")
    return None
