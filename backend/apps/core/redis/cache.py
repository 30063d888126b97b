"""The cache Redis (REDIS_CACHE_URL): the logger its outages are reported on.

django-redis logs the errors it ignores there (DJANGO_REDIS_LOGGER in
config/settings.py) and so do the rate windows (apps/core/drf/rate_windows.py), so
that one filter in LOGGING (runtime/logging.py, which names this logger without
importing it) reports an outage once per CACHE_ERROR_LOG_INTERVAL, not per request.
"""

CACHE_LOGGER = __name__
