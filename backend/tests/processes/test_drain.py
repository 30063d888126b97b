"""The web role drains on SIGTERM: real gunicorn with the shipped configuration.

After SIGTERM, /health/ready/ answers 503 at once (load balancers stop routing here),
requests keep being served for WEB_DRAIN_SECONDS with `Connection: close` (kept-alive
clients move to another instance), a request in flight when the listener closes
still completes, and the process exits 0.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests

pytestmark = pytest.mark.slow

DRAIN = 3


def test_sigterm_drains_then_stops_gracefully(start_gunicorn) -> None:
    server = start_gunicorn(
        "tests.support.slow_wsgi:application",
        WEB_DRAIN_SECONDS=str(DRAIN),
        GUNICORN_GRACEFUL_TIMEOUT="10",
    )
    ready = requests.get(server.base_url + "/health/ready/", timeout=5)
    assert ready.status_code == 200, ready.text
    kept_alive = requests.Session()
    assert kept_alive.get(server.base_url + "/health/", timeout=5).status_code == 200

    # A request that outlives the drain: sent before SIGTERM, answered after the
    # listener has closed, inside the graceful stop.
    slow: dict[str, object] = {}

    def slow_request() -> None:
        try:
            response = requests.get(
                server.base_url + f"/slow/?seconds={DRAIN + 2}", timeout=30
            )
            slow["status"], slow["body"] = response.status_code, response.text
        except requests.RequestException as exc:
            slow["status"] = exc
        slow["done"] = time.monotonic()

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)

    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    # 1. Readiness fails at once (bounded window: the master's loop wakes on the
    #    signal; 1 s covers a loaded machine).
    while True:
        answer = requests.get(server.base_url + "/health/ready/", timeout=5)
        if answer.status_code == 503:
            break
        assert time.monotonic() - signalled < 1.0, "readiness still 200 after 1 s"
        time.sleep(0.02)
    readiness_failed_after = time.monotonic() - signalled
    assert answer.json() == {"status": "draining", "checks": {}}
    # The request that first sees 503 may have started (gunicorn's pre_request,
    # which marks it to close) an instant before the drain did; the next one may not.
    answer = requests.get(server.base_url + "/health/ready/", timeout=5)
    assert answer.status_code == 503
    assert answer.headers["Connection"] == "close"

    # 2. During the drain, requests already routed here are served, and every
    #    answer closes its connection, including one on a kept-alive connection.
    during = kept_alive.get(server.base_url + "/health/", timeout=5)
    assert during.status_code == 200
    assert during.headers["Connection"] == "close"
    served_during_drain = 0
    while time.monotonic() - signalled < DRAIN - 0.5:
        response = requests.get(server.base_url + "/health/", timeout=5)
        assert response.status_code == 200
        assert response.headers["Connection"] == "close"
        served_during_drain += 1
        time.sleep(0.1)
    assert server.process.poll() is None

    # 3. Then gunicorn's graceful stop: the in-flight request completes, exit 0.
    code = server.process.wait(timeout=DRAIN + 15)
    exited_after = time.monotonic() - signalled
    thread.join(timeout=30)
    assert code == 0
    assert slow["status"] == 200, slow
    assert slow["body"] == "done"
    assert exited_after >= DRAIN
    messages = [record.get("message") for record in server.json_lines()]
    assert "draining: readiness answers 503, listener stays open" in messages
    assert "drain over; graceful stop" in messages
    assert messages.index("drain over; graceful stop") > messages.index(
        "draining: readiness answers 503, listener stays open"
    )
    assert any("Shutting down: Master" in line for line in server.lines)
    print(
        f"drain figures: readiness_503_after_s={readiness_failed_after:.3f} "
        f"served_during_drain={served_during_drain} exited_after_s={exited_after:.1f} "
        f"slow_request_done_after_s={float(slow['done']) - signalled:.1f}"  # type: ignore[arg-type]
    )


def test_connection_refused_after_the_drain_not_before(start_gunicorn) -> None:
    """The listener stays open for the whole drain and closes after it."""
    server = start_gunicorn(WEB_DRAIN_SECONDS=str(DRAIN))
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(DRAIN - 1)
    assert requests.get(server.base_url + "/health/", timeout=5).status_code == 200
    assert server.process.wait(timeout=DRAIN + 15) == 0
    assert time.monotonic() - signalled >= DRAIN
    with pytest.raises(requests.ConnectionError):
        requests.get(server.base_url + "/health/", timeout=5)
