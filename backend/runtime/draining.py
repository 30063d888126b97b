"""Whether this web server is draining: SIGTERM received, listener still open.

One byte of anonymous shared memory, mapped when gunicorn's configuration is loaded
in the master, before any worker is forked: the master sets it on SIGTERM and every
worker (also one forked during the drain) reads the same page. No file: nothing
stale survives a container restart, and a read-only root needs no writable path.
Django-free: the gunicorn configuration imports it.
"""

from __future__ import annotations

import mmap

_flag = mmap.mmap(-1, 1)


def drain_begin() -> None:
    """Mark this server as draining (called in the gunicorn master)."""
    _flag[0] = 1


def drain_active() -> bool:
    """Return whether the server is draining."""
    return _flag[0] == 1
