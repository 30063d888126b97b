"""DRF token authentication with a brute-force brake, and verified tokens reused from
the process's token cache (apps/core/drf/token_cache.py)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request

from apps.core.drf.token_cache import token_cache_lookup, token_cache_store
from apps.core.http.brakes import failure_count_add
from apps.core.http.client_ip import client_ip

logger = logging.getLogger(__name__)

AUTH_FAILURE_WINDOW_SECONDS = 60


class ThrottledTokenAuthentication(TokenAuthentication):
    """Token auth that answers 429 to a client IP guessing tokens.

    DRF runs throttles after authentication, so a wrong token is a 401 every time
    and throttling never sees it; the failures are counted here instead. Only
    failures are counted. Verified tokens are reused from the process's cache
    (apps.core.drf.token_cache) and always served, so a token verified before the brake
    engaged keeps working (an office behind one NAT), as do sessions. Once an IP is
    braked, any other token from it is refused before the database lookup: a
    guess must not cost a query. A valid token this process has not verified yet
    is refused with them until the window ends (at most a minute).
    """

    def authenticate(self, request: Request) -> Any:
        self._client_ip = client_ip(request._request)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            ip = self._client_ip
            failures = failure_count_add(
                key=_brake_key(ip), seconds=AUTH_FAILURE_WINDOW_SECONDS
            )
            # With Redis down the count is unknown: a 401, never a lockout.
            if failures is not None and failures > settings.AUTH_FAILURE_LIMIT:
                if failures == settings.AUTH_FAILURE_LIMIT + 1:
                    logger.warning("token guessing throttled", extra={"client_ip": ip})
                raise exceptions.Throttled(wait=AUTH_FAILURE_WINDOW_SECONDS) from None
            raise

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        cached = token_cache_lookup(key)
        if cached is not None:
            return cached
        # One Redis read, only when the token is not cached (once per token per
        # AUTH_TOKEN_CACHE_SECONDS per process); unknown (Redis down) is not braked.
        failures = cache.get(_brake_key(self._client_ip))
        if failures is not None and failures > settings.AUTH_FAILURE_LIMIT:
            raise exceptions.Throttled(wait=AUTH_FAILURE_WINDOW_SECONDS)
        user, token = super().authenticate_credentials(key)
        token_cache_store(key=key, user=user, token=token)
        return user, token


def _brake_key(ip: str) -> str:
    return f"auth-failures:{ip}"
