"""Schemathesis against our own OpenAPI schema, through gunicorn, as a staff user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def test_api_survives_generated_requests(start_gunicorn, staff, make_product) -> None:
    from rest_framework.authtoken.models import Token

    make_product(on_hand=1000, sku="FUZZ-1")
    token = Token.objects.create(user=staff).key
    # Generated requests also try wrong credentials; do not let the token-guessing
    # brake turn the rest of the run into 429s.
    server = start_gunicorn(GUNICORN_WORKERS="2", AUTH_FAILURE_LIMIT="1000000")
    try:
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{server.base_url}/api/schema/",
                "--header",
                f"Authorization: Token {token}",
                "--header",
                "X-Forwarded-Proto: https",
                "--checks",
                "not_a_server_error,response_schema_conformance,"
                "content_type_conformance,status_code_conformance",
                "--max-examples",
                "25",
                "--seed",
                "20261127",
                "--request-timeout",
                "10",
                "--workers",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        cache.delete("auth-failures:127.0.0.1")
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower()
    assert not [line for line in server.lines if '"status": 5' in line]
