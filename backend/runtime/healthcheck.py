"""Role-aware container healthcheck: `python -m runtime.healthcheck`.

No curl, no netcat, no Django import (it runs every few seconds): web probes
/health/ over HTTP, worker and beat check their heartbeat file's age, migrate is
always healthy. Exit 0 healthy, 1 not, with one line saying why.

What refreshes a heartbeat is the process's business
(apps/core/worker/liveness/wiring.py): a worker's only while it consumes (a canary task
it sent itself ran), while every pool slot runs a task inside its time limit, or while
it retries a lost broker; beat's on each tick.
The file holds "<unix time> <why>"; the probe reports the why.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

from runtime.env import load
from runtime.files import heartbeat_file, role_read
from runtime.probes import LIVENESS_PATH


def check_web(port: int, timeout: float = 2.0) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}{LIVENESS_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, f"GET {url} -> {response.status}"
    except Exception as exc:  # noqa: BLE001 - any failure is unhealthy
        return False, f"GET {url} failed: {exc}"


def check_heartbeat(path: Path, stale_after: float) -> tuple[bool, str]:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"no heartbeat file at {path}"
    why = heartbeat_reason(path)
    if age > stale_after:
        return False, (
            f"heartbeat {path} is {age:.0f}s old (limit {stale_after:.0f}s){why}"
        )
    return True, f"heartbeat {path} is {age:.0f}s old{why}"


def heartbeat_reason(path: Path) -> str:
    try:
        _, _, reason = path.read_text().partition(" ")
    except OSError:
        return ""
    return f": {reason.strip()}" if reason.strip() else ""


def main() -> int:
    config = load()
    heartbeat_dir = Path(config["HEARTBEAT_DIR"])
    # The entrypoint's record wins: the role may have come as an argument, which
    # this process (started by the platform, not by the entrypoint) never saw.
    role = role_read(directory=heartbeat_dir) or config["APP_ROLE"]
    stale = config["HEARTBEAT_STALE_SECONDS"]
    if role == "web":
        ok, why = check_web(config["PORT"])
    elif role in {"worker", "beat"}:
        ok, why = check_heartbeat(
            heartbeat_file(directory=heartbeat_dir, role=role), stale
        )
    else:  # migrate: a one-shot job, judged by its exit status
        ok, why = True, "migrate role has no long-running process"
    print(f"{'healthy' if ok else 'unhealthy'} ({role}): {why}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
