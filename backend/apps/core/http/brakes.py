"""Failure counters that brake guessing: API tokens per client IP, and logins per
account and per client IP.

One counter per key, kept in the shared cache (Redis) for a window that starts at the
first failure; only failures are counted. With Redis down a count is unknown and
nothing is refused: a cache outage must not lock every administrator out.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from apps.core.http.client_ip import client_ip

logger = logging.getLogger(__name__)


def failure_count_add(*, key: str, seconds: int) -> int | None:
    """Count one failure under `key` for `seconds` after the first one; return the
    count (None: unknown)."""
    added = cache.add(key, 1, seconds)
    if added:
        return 1
    if added is None:  # the cache swallowed an error
        return None
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, seconds)
        return 1


def _login_keys(*, request: HttpRequest | None, username: str) -> dict[str, int]:
    """Return each counter a login attempt is counted under, with its limit."""
    # Hashed: a username is user input of any length; folded: 'Admin' and 'admin'
    # share one budget, whatever the backend makes of the case.
    account = hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
    keys = {f"login-failures:account:{account}": settings.LOGIN_FAILURE_LIMIT}
    if request is not None:
        ip = client_ip(request)
        keys[f"login-failures:ip:{ip}"] = settings.LOGIN_FAILURE_LIMIT_PER_IP
    return keys


def login_refused(*, request: HttpRequest | None, username: str) -> bool:
    """Whether the account or the client IP used up its failed logins (the right
    password is refused too until the window ends)."""
    keys = _login_keys(request=request, username=username)
    # One round trip; django-redis answers None when Redis is down (nothing refused).
    counts = cache.get_many(list(keys)) or {}
    return any(counts.get(key, 0) >= limit for key, limit in keys.items())


def login_failure_record(*, request: HttpRequest | None, username: str) -> None:
    """Count one failed login against the account and the client IP."""
    seconds = settings.LOGIN_LOCKOUT_SECONDS
    for key, limit in _login_keys(request=request, username=username).items():
        if failure_count_add(key=key, seconds=seconds) == limit:
            # Once per lockout, not once per refused attempt.
            logger.warning(
                "login locked out after %d failures",
                limit,
                extra={"brake": key.split(":")[1], "client_ip": _ip_of(request)},
            )


def _ip_of(request: HttpRequest | None) -> str | None:
    return None if request is None else client_ip(request)
