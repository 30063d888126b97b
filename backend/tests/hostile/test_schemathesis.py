"""Schemathesis against our own OpenAPI schema, through gunicorn, as a staff user.

Every check, every phase: examples, coverage (boundary and negative values of every
parameter), fuzzing, and stateful sequences that follow the schema's links, so
reservation ids created by one call flow into get, confirm and cancel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
BACKEND = Path(__file__).resolve().parents[2]

# Every operation of the schema, as routes the access log shows.
OPERATIONS = {
    ("GET", r"/api/v1/products/"),
    ("POST", r"/api/v1/products/"),
    ("GET", r"/api/v1/products/[^/]+/"),
    ("POST", r"/api/v1/products/[^/]+/restock/"),
    ("POST", r"/api/v1/reservations/"),
    ("GET", r"/api/v1/reservations/[0-9a-f-]{36}/"),
    ("POST", r"/api/v1/reservations/[0-9a-f-]{36}/confirm/"),
    ("POST", r"/api/v1/reservations/[0-9a-f-]{36}/cancel/"),
}


def test_api_conforms_to_its_schema(start_gunicorn, staff, make_product, tmp_path):
    from rest_framework.authtoken.models import Token

    make_product(on_hand=1_000_000, sku="FUZZ-1")
    token = Token.objects.create(user=staff).key
    # ignored_auth probes send wrong tokens on purpose: keep the brake out of it.
    server = start_gunicorn(
        GUNICORN_WORKERS="2",
        AUTH_FAILURE_LIMIT="1000000",
        RESERVATION_MAX_UNITS_PER_OWNER="1000000000",
    )
    report = tmp_path / "report.json"
    try:
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(CONFIG),
                "run",
                f"{server.base_url}/api/schema/",
                "--header",
                f"Authorization: Token {token}",
                "--header",
                "X-Forwarded-Proto: https",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "30",
                "--seed",
                "20261127",
                "--request-timeout",
                "10",
                "--workers",
                "2",
                "--report",
                "json",
                "--report-json-path",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=tmp_path,
            # The client's side of the Idempotency-Key contract (see the module).
            env={
                **os.environ,
                "PYTHONPATH": str(BACKEND),
                "SCHEMATHESIS_HOOKS": "tests.hostile.schemathesis_hooks",
            },
        )
    finally:
        cache.delete("auth-failures:127.0.0.1")
    print(result.stdout[-3000:])
    outcome = json.loads(report.read_text())
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert outcome["failures"] == []
    assert outcome["errors"] == []
    assert outcome["operations"]["tested"] == len(OPERATIONS)
    assert {name: p["status"] for name, p in outcome["phases"].items()} == {
        "examples": "success",
        "coverage": "success",
        "fuzzing": "success",
        "stateful": "success",
    }
    # Every operation answered 2xx at least once: confirm and cancel can only have,
    # with ids taken from reservations made earlier in the run (the links).
    accepted = [
        (record["method"], record["path"])
        for record in server.json_lines()
        if record.get("logger") == "gunicorn.access" and 200 <= record["status"] < 300
    ]
    for method, pattern in sorted(OPERATIONS):
        assert any(
            m == method and re.fullmatch(pattern, path) for m, path in accepted
        ), (method, pattern)
    assert not [line for line in server.lines if '"status": 5' in line]
