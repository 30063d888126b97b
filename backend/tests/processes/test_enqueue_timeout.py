"""`.delay()` against a Redis that accepts TCP and never answers fails fast."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.env import PRODUCTION_ENV, clean_environ
from tests.support.processes import run_python
from tests.support.tcp_proxy import SilentServer

pytestmark = pytest.mark.slow

SCRIPT = """
import json, time, django
django.setup()
from config.celery import app

@app.task(name="tests.never_runs")
def never_runs():
    pass

started = time.monotonic()
try:
    outcome = {"task_id": never_runs.delay().id}
except Exception as exc:
    outcome = {"error": type(exc).__name__}
outcome["elapsed"] = time.monotonic() - started
print(json.dumps(outcome))
"""


def test_enqueue_to_a_hung_redis_fails_within_the_timeout() -> None:
    silent = SilentServer()
    try:
        env = clean_environ(
            **PRODUCTION_ENV,
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=os.environ["DATABASE_URL"],
            REDIS_URL=f"redis://127.0.0.1:{silent.port}/0",
            CELERY_BROKER_TIMEOUT="1",
        )
        result = run_python(["-c", SCRIPT], env=env, timeout=60)
    finally:
        silent.close()
    lines = result.stdout.strip().splitlines()
    outcome = json.loads(lines[-1])
    # The caller gets the broker's error instead of waiting forever: one attempt
    # plus one retry, each bounded by the 1 s socket timeout.
    assert "task_id" not in outcome, result.stdout + result.stderr
    assert outcome["error"] == "OperationalError"
    assert outcome["elapsed"] < 5
