"""Sentry, only when SENTRY_DSN is set."""

from __future__ import annotations

from typing import Any

from apps.core.context import request_id_get


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

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        before_send=_tag_request_id,
        transport=transport,
    )
