"""PostgreSQL with Prometheus metrics and health checks that cost no round trip
while a connection is busy.

django_prometheus's backend resolved three labelled metrics on every query, and
Django's CONN_HEALTH_CHECKS sent a `SELECT 1` before the first query of every
request. Here the labelled metrics are resolved once per connection class (same
metric names, so dashboards and alerts are unchanged), and a connection is checked
only when it sat idle for HEALTH_CHECK_IDLE_SECONDS or more: the case the check
exists for (PostgreSQL restarted, a proxy or firewall dropped an idle connection).
A connection that answered a moment ago is trusted; if it fails anyway, Django's
own errors_occurred check closes it at the end of that request.
"""

from __future__ import annotations

import time
from functools import cache

from django.db.backends.postgresql import base as django_postgresql
from django_prometheus.db import (
    errors_total,
    execute_many_total,
    execute_total,
    query_duration_seconds,
)
from django_prometheus.db.backends.postgresql import base as prometheus_postgresql

HEALTH_CHECK_IDLE_SECONDS = 1.0


@cache
def instrumented_cursor(cursor_class: type, alias: str, vendor: str) -> type:
    """Return a cursor class counting and timing its queries (one per alias)."""
    executed = execute_total.labels(alias, vendor)
    executed_many = execute_many_total.labels(alias, vendor)
    duration = query_duration_seconds.labels(alias, vendor)

    class InstrumentedCursor(cursor_class):
        def execute(self, *args, **kwargs):
            executed.inc()
            started = time.perf_counter()
            try:
                return super().execute(*args, **kwargs)
            except Exception as exc:
                errors_total.labels(alias, vendor, type(exc).__name__).inc()
                raise
            finally:
                duration.observe(time.perf_counter() - started)

        def executemany(self, query, param_list, *args, **kwargs):
            executed.inc(len(param_list))
            executed_many.inc(len(param_list))
            started = time.perf_counter()
            try:
                return super().executemany(query, param_list, *args, **kwargs)
            except Exception as exc:
                errors_total.labels(alias, vendor, type(exc).__name__).inc()
                raise
            finally:
                duration.observe(time.perf_counter() - started)

    return InstrumentedCursor


class DatabaseWrapper(prometheus_postgresql.DatabaseWrapper):
    # The clock of the idle test; tests move it instead of sleeping.
    clock = staticmethod(time.monotonic)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.last_used_at = float("-inf")

    def get_connection_params(self):
        # Skip django_prometheus's override: it builds a new wrapper class per call.
        conn_params = django_postgresql.DatabaseWrapper.get_connection_params(self)
        conn_params["cursor_factory"] = instrumented_cursor(
            conn_params["cursor_factory"], self.alias, self.vendor
        )
        return conn_params

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and self.clock() - self.last_used_at < HEALTH_CHECK_IDLE_SECONDS
        ):
            self.health_check_done = True  # answered a moment ago: trust it
            return
        super().close_if_health_check_failed()

    def close_if_unusable_or_obsolete(self) -> None:
        # Called when a request starts and ends; health_check_done is still True at
        # the end of a request that used (or checked) the connection.
        if self.connection is not None and self.health_check_done:
            self.last_used_at = self.clock()
        super().close_if_unusable_or_obsolete()
