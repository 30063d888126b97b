"""Names of the files a container's processes share under HEARTBEAT_DIR.

Django-free: the healthcheck probe imports it every few seconds.
"""

from __future__ import annotations

from pathlib import Path

ROLE_FILE_NAME = "app-role"


def heartbeat_file(*, directory: str | Path, role: str) -> Path:
    """Return the heartbeat file that the `role`'s process keeps fresh."""
    return Path(directory) / f"celery-{role}.heartbeat"


def consumed_file(*, directory: str | Path) -> Path:
    """Return the file a worker's canary task touches each time it runs.

    Its age is how long ago this worker last proved it consumes from the broker;
    the heartbeat may be fresh for other reasons (busy, reconnecting).
    """
    return Path(directory) / "celery-worker.consumed"


def role_file(*, directory: str | Path) -> Path:
    """Return the file in which the entrypoint records the container's role.

    A probe is a new process with the container's environment, not the one the
    entrypoint exported: with the role given as an argument (`args: ["worker"]`),
    only this file tells the probe which role runs here.
    """
    return Path(directory) / ROLE_FILE_NAME


def role_read(*, directory: str | Path) -> str | None:
    """Return the role recorded by the entrypoint, or None when there is none."""
    try:
        role = role_file(directory=directory).read_text().strip()
    except OSError:
        return None
    return role or None
