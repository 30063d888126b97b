"""Sentry, only when SENTRY_DSN is set: nothing secret leaves the process."""

from __future__ import annotations

from typing import Any

from runtime.context import request_id_get

# Keys scrubbed wherever they appear in an event, at any depth. Frame locals are off
# (see sentry_init), so these guard what is left: request headers, extra data, task
# arguments, breadcrumbs. `conn_params` and `dsn` are psycopg2's connect() locals
# that held the database password during an outage.
SCRUBBED_KEYS = (
    "password",
    "passwd",
    "secret",
    "token",
    "key",
    "api_key",
    "auth",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set_cookie",
    "csrftoken",
    "sessionid",
    "credentials",
    "dsn",
    "conn_params",
    "database_url",
    "redis_url",
    "broker_url",
    "celery_broker_url",
    "django_secret_key",
    "metrics_token",
    "x_forwarded_for",
    "x_real_ip",
    "remote_addr",
    "ip_address",
)


def _tag_request_id(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    request_id = request_id_get()
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
    return event


def sentry_init(
    *,
    dsn: str,
    environment: str,
    release: str | None,
    traces_sample_rate: float,
    transport: Any = None,
) -> None:
    """Start the Sentry SDK with the project's privacy defaults."""
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.scrubber import EventScrubber

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        # Frame locals held the database password (psycopg2's connect()) and the
        # caller's raw token (the token lookup's query parameters) during an outage;
        # no scrubber can know every name a library gives a secret.
        include_local_variables=False,
        # Request bodies carry customers' data and admin passwords.
        max_request_body_size="never",
        event_scrubber=EventScrubber(denylist=list(SCRUBBED_KEYS), recursive=True),
        integrations=[DjangoIntegration(), CeleryIntegration()],
        before_send=_tag_request_id,
        transport=transport,
    )
