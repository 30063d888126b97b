"""Waiting for a server to answer over HTTP (tests and the bench)."""

from __future__ import annotations

import time

import requests

from tests.support.processes import ServerProcess


def wait_http(
    url: str,
    timeout: float = 30,
    server: ServerProcess | None = None,
    *,
    status: int | None = None,
    interval: float = 0.1,
) -> float:
    """Return the seconds until `url` answered (with `status`, when given).

    Fails at once when the server's process exits first.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server is not None and server.process.poll() is not None:
            raise AssertionError("server exited:\n" + server.output())
        try:
            response = requests.get(url, timeout=1)
            if status is None or response.status_code == status:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def error_body(*, code: str, message: str, request_id: str | None) -> dict:
    """The project's JSON error body as an answer without details carries it."""
    return {
        "error": {"code": code, "message": message, "details": {}},
        "request_id": request_id,
    }
