"""Ports on 127.0.0.1 (no Django, no pytest: the launcher and the bench use it too)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
