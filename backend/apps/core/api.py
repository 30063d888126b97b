"""DRF building blocks of the project: token auth with a brute-force brake, and a
JSON parser that turns pathological documents into 400s."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions, throttling
from rest_framework.authentication import TokenAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.request import Request

from apps.core.brakes import failure_count_add
from apps.core.client_ip import client_ip
from apps.core.rate_windows import window_counters
from apps.core.tokens import token_cache_lookup, token_cache_store

logger = logging.getLogger(__name__)

AUTH_FAILURE_WINDOW_SECONDS = 60


class ThrottledTokenAuthentication(TokenAuthentication):
    """Token auth that answers 429 to a client IP guessing tokens.

    DRF runs throttles after authentication, so a wrong token is a 401 every time
    and throttling never sees it; the failures are counted here instead. Only
    failures are counted. Verified tokens are reused from the process's cache
    (apps.core.tokens) and always served, so a token verified before the brake
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


class SafeJSONParser(JSONParser):
    """JSONParser whose deeply nested documents are a 400, not a RecursionError."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON nested too deeply.") from None


class FixedWindowRateMixin:
    """O(1) rate limiting: one counter per client and window, kept in Redis and added
    to in batches by each process (apps.core.rate_windows).

    DRF's SimpleRateThrottle stores every request time of the window in one cached
    list and rewrites it on each request; at thousands of requests per minute that
    list dominated the request time (measured in bench/). A fixed window allows a
    burst of up to twice the rate across a window boundary, which is acceptable for
    abuse protection.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        ident_key = self.get_cache_key(request, view)
        if ident_key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        self.window_end = (window + 1) * self.duration
        return window_counters.admit(
            key=f"{ident_key}:{window}",
            limit=self.num_requests,
            now=now,
            window_end=self.window_end,
        )

    def wait(self) -> float:
        return max(0.0, self.window_end - self.timer())


class UserRateThrottle(FixedWindowRateMixin, throttling.UserRateThrottle):
    pass


class AnonRateThrottle(FixedWindowRateMixin, throttling.AnonRateThrottle):
    pass
