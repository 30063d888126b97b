"""`.delay()` against a Redis that accepts TCP and never answers fails fast, logged."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.env import PRODUCTION_ENV, clean_environ
from tests.support.processes import run_python
from tests.tcp_proxy import SilentServer

pytestmark = pytest.mark.slow

SCRIPT = """
import json, time, django
django.setup()
from apps.core.services import task_enqueue
from config.celery import app

@app.task(name="tests.never_runs")
def never_runs():
    pass

started = time.monotonic()
task_id = task_enqueue(never_runs)
print(json.dumps({"task_id": task_id, "elapsed": time.monotonic() - started}))
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
    assert outcome["task_id"] is None
    # One attempt plus one retry, each bounded by the 1 s socket timeout.
    assert outcome["elapsed"] < 5
    errors = [json.loads(line) for line in lines[:-1] if '"ERROR"' in line]
    assert errors, result.stdout + result.stderr
    assert errors[0]["message"].startswith("could not enqueue task tests.never_runs")
