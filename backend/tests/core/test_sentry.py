"""Sentry: privacy defaults and the request id tag (a fake transport, no network)."""

from __future__ import annotations

import sentry_sdk
from sentry_sdk.transport import Transport

from apps.core.context import request_id_var
from apps.core.sentry import sentry_init
from tests.support.env import PRODUCTION_ENV, clean_environ
from tests.support.processes import run_python


class RecordingTransport(Transport):
    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.envelopes = []

    def capture_envelope(self, envelope) -> None:
        self.envelopes.append(envelope)


def test_events_carry_request_id_and_no_pii() -> None:
    transport = RecordingTransport()
    sentry_init(
        dsn="https://public@sentry.example.com/1",
        environment="staging",
        release="abc123",
        traces_sample_rate=0.0,
        transport=transport,
    )
    try:
        client = sentry_sdk.get_client()
        assert client.options["send_default_pii"] is False
        token = request_id_var.set("trace-sentry-0001")
        try:
            sentry_sdk.capture_message("boom")
        finally:
            request_id_var.reset(token)
        sentry_sdk.flush()
        events = [
            item.payload.json
            for envelope in transport.envelopes
            for item in envelope.items
            if item.type == "event"
        ]
        assert len(events) == 1
        assert events[0]["tags"]["request_id"] == "trace-sentry-0001"
        assert events[0]["environment"] == "staging"
        assert events[0]["release"] == "abc123"
    finally:
        sentry_sdk.init(dsn=None)


def test_sentry_off_without_dsn() -> None:
    code = (
        "import django; django.setup(); import sentry_sdk;"
        "print(sentry_sdk.get_client().is_active())"
    )
    env = clean_environ(
        **PRODUCTION_ENV,
        DATABASE_URL="postgres://a:b@db/app",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    result = run_python(["-c", code], env=env)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr
    with_dsn = run_python(
        ["-c", code], env={**env, "SENTRY_DSN": "https://public@sentry.example.com/1"}
    )
    assert with_dsn.stdout.strip().splitlines()[-1] == "True", with_dsn.stderr
