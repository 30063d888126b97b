"""DRF throttling: fixed-window rate limits counted in batches per process (the
windows themselves: apps/core/drf/rate_windows.py)."""

from __future__ import annotations

from typing import Any

from rest_framework import throttling
from rest_framework.request import Request

from apps.core.drf.rate_windows import window_counters


class FixedWindowRateMixin:
    """O(1) rate limiting: one counter per client and window, kept in Redis and added
    to in batches by each process (apps.core.drf.rate_windows).

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
