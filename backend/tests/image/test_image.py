"""The built image, run with buildah against the PostgreSQL and Redis on 127.0.0.1.

Run by `make image-test` (after `make image`), not by `make test`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PRODUCTION_ENV, ServerProcess, start_process

IMAGE = os.environ.get("IMAGE", "inventory-backend:test")
BASE_IMAGE = "docker.io/library/python:3.12-slim"
BUILDAH_ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
pytestmark = pytest.mark.slow


def buildah(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", *args],
        env=BUILDAH_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def image_config() -> dict:
    result = buildah("inspect", "--type", "image", IMAGE)
    assert result.returncode == 0, (
        f"build the image first (make image): {result.stderr}"
    )
    return json.loads(result.stdout)


@pytest.fixture
def container() -> Iterator[str]:
    result = buildah("from", "--pull-never", IMAGE)
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip().splitlines()[-1]
    yield name
    buildah("rm", name)


def kill_marked(marker: str) -> None:
    """Kill every process started with RUN_MARKER=<marker> (inside the container)."""
    needle = f"RUN_MARKER={marker}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


@pytest.fixture
def app_env(production_env) -> dict[str, str]:
    keep = {
        k: production_env[k] for k in ("DATABASE_URL", "REDIS_URL", *PRODUCTION_ENV)
    }
    return {**keep, "TINI_SUBREAPER": "1"}


@pytest.fixture
def run_in(container: str, app_env: dict[str, str]):
    """Start `tini -- entrypoint.sh` (the image's ENTRYPOINT) inside the container."""
    markers: list[str] = []

    def run(*args: str, **env: str) -> ServerProcess:
        marker = uuid.uuid4().hex
        markers.append(marker)
        flags = []
        for key, value in {**app_env, **env, "RUN_MARKER": marker}.items():
            flags += ["--env", f"{key}={value}"]
        argv = [
            "buildah",
            "run",
            "--network",
            "host",
            *flags,
            container,
            "--",
            "tini",
            "--",
            "/app/scripts/entrypoint.sh",
            *args,
        ]
        port = env.get("PORT", "")
        return start_process(argv, env=BUILDAH_ENV, base_url=f"http://127.0.0.1:{port}")

    yield run
    for marker in markers:
        kill_marked(marker)


def exec_in(container: str, *command: str, **env: str) -> subprocess.CompletedProcess:
    flags = []
    for key, value in env.items():
        flags += ["--env", f"{key}={value}"]
    return buildah("run", "--network", "host", *flags, container, "--", *command)


def test_image_user_and_contents(image_config: dict, container: str) -> None:
    config = image_config["Docker"]["config"]
    assert config["User"] == "1000:0"
    assert config["Entrypoint"] == ["tini", "--", "/app/scripts/entrypoint.sh"]
    assert config["Healthcheck"]["Test"] == [
        "CMD",
        "python",
        "-m",
        "apps.core.healthcheck",
    ]
    assert config["StopSignal"] == "SIGTERM"
    assert "5000/tcp" in config["ExposedPorts"]
    assert exec_in(container, "id", "-u").stdout.strip() == "1000"
    probe = exec_in(
        container,
        "sh",
        "-c",
        "for tool in gcc cc g++ make curl wget git; do command -v $tool; done; "
        "ls /app/tests /app/.env /app/.git 2>/dev/null; true",
    )
    assert probe.stdout.strip() == ""
    static = exec_in(container, "ls", "/app/staticfiles/staticfiles.json")
    assert static.returncode == 0
    # The code is read-only for the app user.
    assert exec_in(container, "touch", "/app/x").returncode != 0


def test_image_size_over_base(image_config: dict) -> None:
    images = buildah("images", "--json").stdout
    sizes = {}
    for entry in json.loads(images):
        for name in entry.get("names") or []:
            sizes[name] = entry["size"]
    image_size = next(v for k, v in sizes.items() if k.endswith(IMAGE))
    base_size = sizes[BASE_IMAGE]
    print(
        f"\nimage {IMAGE}: {image_size / 1e6:.1f} MB, base {base_size / 1e6:.1f} MB, "
        f"over base {(image_size - base_size) / 1e6:.1f} MB"
    )
    # A figure for the notes, not a limit: the image only adds to its base.
    assert image_size > base_size
