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

from apps.core.client_ip import client_ip

logger = logging.getLogger(__name__)

AUTH_FAILURE_WINDOW_SECONDS = 60


class ThrottledTokenAuthentication(TokenAuthentication):
    """Token auth that answers 429 to a client IP guessing tokens.

    DRF runs throttles after authentication, so a wrong token is a 401 every time
    and throttling never sees it; the failures are counted here instead. Only
    failures are counted and refused: a valid token or session from the same
    address (an office behind one NAT) keeps working while the guessing is refused.
    """

    def authenticate(self, request: Request) -> Any:
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            ip = client_ip(request._request)
            failures = _count_failure(f"auth-failures:{ip}")
            # With Redis down the count is unknown: a 401, never a lockout.
            if failures is not None and failures > settings.AUTH_FAILURE_LIMIT:
                if failures == settings.AUTH_FAILURE_LIMIT + 1:
                    logger.warning("token guessing throttled", extra={"client_ip": ip})
                raise exceptions.Throttled(wait=AUTH_FAILURE_WINDOW_SECONDS) from None
            raise


def _count_failure(key: str) -> int | None:
    """Count one failure in the current window; return the count (None: unknown)."""
    added = cache.add(key, 1, AUTH_FAILURE_WINDOW_SECONDS)
    if added:
        return 1
    if added is None:  # the cache swallowed an error
        return None
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, AUTH_FAILURE_WINDOW_SECONDS)
        return 1


class SafeJSONParser(JSONParser):
    """JSONParser whose deeply nested documents are a 400, not a RecursionError."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON nested too deeply.") from None


class FixedWindowRateMixin:
    """O(1) rate limiting: one counter per client and window, incremented in Redis.

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
        self.key = f"{ident_key}:{window}"
        self.window_end = (window + 1) * self.duration
        if not self.cache.add(self.key, 1, self.duration + 1):
            try:
                count = self.cache.incr(self.key)
            except ValueError:  # expired between add and incr
                self.cache.add(self.key, 1, self.duration + 1)
                count = 1
        else:
            count = 1
        # With Redis down the cache answers None: do not lock everybody out.
        return count is None or count <= self.num_requests

    def wait(self) -> float:
        return max(0.0, self.window_end - self.timer())


class UserRateThrottle(FixedWindowRateMixin, throttling.UserRateThrottle):
    pass


class AnonRateThrottle(FixedWindowRateMixin, throttling.AnonRateThrottle):
    pass
