"""A fake Sentry ingest endpoint on 127.0.0.1: records what the SDK would send.

Sentry is an external SaaS, the one thing tests may fake: the processes under test
run the real SDK with a real `SENTRY_DSN` that points here, so whatever they would
send leaves the process over HTTP and is recorded byte for byte.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class SentryInbox:
    """The envelopes received, decompressed, as text."""

    port: int
    bodies: list[str] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def events(self) -> list[dict]:
        """Every item of type `event` in the envelopes received so far."""
        found = []
        for body in list(self.bodies):
            lines = body.split("\n")
            # An envelope: its header line, then item-header / payload line pairs.
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def wait_for_event(self, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if events:
                return events
            time.sleep(0.1)
        raise AssertionError(f"no Sentry event within {timeout}s")


@contextmanager
def sentry_inbox() -> Iterator[SentryInbox]:
    """Serve a Sentry envelope endpoint on a free port for the duration."""
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding", "identity")
            if encoding == "gzip":
                raw = gzip.decompress(raw)
            elif encoding != "identity":
                # Undecoded bytes would hide a secret from the tests' search.
                raise AssertionError(f"unexpected Content-Encoding {encoding}")
            received.append(raw.decode("utf-8", errors="replace"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SentryInbox(port=server.server_address[1], bodies=received)
    finally:
        server.shutdown()
        server.server_close()
