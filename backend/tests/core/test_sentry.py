"""Sentry: privacy defaults and the request id tag (a fake transport, no network)."""

from __future__ import annotations

import uuid

import requests
import sentry_sdk
from sentry_sdk.transport import Transport

from apps.core.sentry import sentry_init
from runtime.context import request_id_var
from tests.support.env import (
    PRODUCTION_ENV,
    UNREACHED_REDIS_URL,
    clean_environ,
    with_venv_path,
)
from tests.support.net import free_port
from tests.support.processes import (
    WORKER_COMMAND,
    run_python,
    start_process,
    stop_group,
)
from tests.support.sentry import SentryInbox, sentry_inbox


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
        REDIS_URL=UNREACHED_REDIS_URL,
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    result = run_python(["-c", code], env=env)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr
    with_dsn = run_python(
        ["-c", code], env={**env, "SENTRY_DSN": "https://public@sentry.example.com/1"}
    )
    assert with_dsn.stdout.strip().splitlines()[-1] == "True", with_dsn.stderr


# What a database outage used to leak: the password (psycopg2's connect() locals) and
# the caller's raw token (the token lookup's query parameters).
DB_PASSWORD = "pw-" + uuid.uuid4().hex
API_TOKEN = uuid.uuid4().hex + "0123abcd"


def unreachable_database_env(production_env: dict[str, str], dsn: str) -> dict:
    """Production settings whose database refuses every connection."""
    return {
        **production_env,
        "DATABASE_URL": f"postgres://app:{DB_PASSWORD}@127.0.0.1:{free_port()}/app",
        "SENTRY_DSN": dsn,
        "SENTRY_ENVIRONMENT": "test",
    }


def assert_no_secret(inbox: SentryInbox, *secrets: str) -> None:
    events = inbox.wait_for_event()
    kinds = {
        value["type"]
        for event in events
        for value in event.get("exception", {}).get("values", [])
    }
    # The outage itself was reported: the test sees the payload that could leak.
    assert "OperationalError" in kinds, events
    payload = "\n".join(inbox.bodies)
    for secret in secrets:
        assert secret not in payload, f"{secret!r} reached Sentry"


def products_during_the_outage(server) -> requests.Response:
    """An authenticated product list: answered 503 while the database is away."""
    return requests.get(
        server.base_url + "/api/v1/products/",
        headers={"Authorization": f"Token {API_TOKEN}", "X-Forwarded-Proto": "https"},
        timeout=10,
    )


def test_database_outage_sends_neither_password_nor_token(
    production_env, start_gunicorn
) -> None:
    with sentry_inbox() as inbox:
        server = start_gunicorn(**unreachable_database_env(production_env, inbox.dsn))
        response = products_during_the_outage(server)
        assert response.status_code == 503, response.text
        assert_no_secret(inbox, API_TOKEN, DB_PASSWORD)


def test_failing_task_sends_no_database_password(production_env, queue) -> None:
    from config.celery import app

    with sentry_inbox() as inbox:
        env = with_venv_path(unreachable_database_env(production_env, inbox.dsn))
        worker = start_process(
            [*WORKER_COMMAND, "-Q", queue, "--concurrency", "1"], env=env
        )
        try:
            worker.wait_for_line(lambda line: "ready." in line, timeout=60)
            app.send_task("inventory.expire_reservations", queue=queue)
            assert_no_secret(inbox, DB_PASSWORD)
        finally:
            stop_group(worker.process)


def test_foreign_host_is_never_sent_to_sentry(production_env, start_gunicorn) -> None:
    """A flood of foreign Host headers: no Sentry event, one WARNING in the log
    without traceback. A database outage afterwards is the control: its event
    arrives, after any the refusals would have sent (one worker, one queue)."""
    with sentry_inbox() as inbox:
        server = start_gunicorn(
            GUNICORN_WORKERS="1", **unreachable_database_env(production_env, inbox.dsn)
        )
        for n in range(5):
            response = requests.get(
                server.base_url + "/api/v1/products/",
                headers={"Host": f"evil{n}.example", "X-Forwarded-Proto": "https"},
                timeout=10,
            )
            assert response.status_code == 400
        control = products_during_the_outage(server)
        assert control.status_code == 503, control.text
        events = inbox.wait_for_event()
        assert [event.get("logger") for event in events] == ["apps.core.drf.exceptions"]
        assert "Invalid HTTP_HOST header" not in "\n".join(inbox.bodies)
    refused = [
        line
        for line in server.json_lines()
        if line.get("logger") == "django.security.DisallowedHost"
    ]
    assert [(line["level"], "exc_info" in line) for line in refused] == [
        ("WARNING", False)
    ]
