"""Engines and images for the platform tests (`make platform-test`).

These tests start the shipped deployment files the way each platform runs them,
on a real Docker Engine (Compose, ECS, Railway) and podman (Kubernetes). They need
both engines and the image built by `make image`; `.ci/run` prepares them.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.containers import BUILDAH_ENV, DOCKER_IMAGE, IMAGE, docker, run
from tests.support.processes import BIN_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The image under test, handed from buildah's store to the Docker Engine."""
    assert shutil.which("docker"), "docker is missing: apt-get install docker.io"
    info = run(["docker", "info"], check=False)
    assert info.returncode == 0, f"no Docker Engine answers: {info.stderr}"
    inspect = run(["buildah", "inspect", "--type", "image", IMAGE], env=BUILDAH_ENV)
    assert inspect.returncode == 0, "build the image first: make image"
    run(
        ["buildah", "push", "-q", IMAGE, f"docker-daemon:{DOCKER_IMAGE}"],
        env=BUILDAH_ENV,
        timeout=600,
    )
    return DOCKER_IMAGE


@pytest.fixture
def docker_network() -> Iterator[str]:
    """A bridge network of the test's own (IPv4 and IPv6), removed afterwards."""
    name = f"plat-{uuid.uuid4().hex[:8]}"
    subnet = (
        f"fd{uuid.uuid4().hex[:2]}:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::/64"
    )
    docker("network", "create", "--ipv6", "--subnet", subnet, name)
    yield name
    leftovers = docker(
        "ps", "-aq", "--filter", f"network={name}", check=False
    ).stdout.split()
    if leftovers:
        docker("rm", "-f", *leftovers, check=False)
    docker("network", "rm", name, check=False)


@pytest.fixture
def docker_cli_config(tmp_path: Path) -> Path:
    """A DOCKER_CONFIG whose `docker compose` is the locked Compose v2 binary."""
    config = tmp_path / "docker-config"
    plugins = config / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(BIN_DIR / "docker-compose")
    return config


@dataclass
class Backing:
    """PostgreSQL and Redis containers on the test's network (stand-in images)."""

    database_url: str
    redis_url: str


@pytest.fixture
def backing_services(docker_network: str) -> Iterator[Backing]:
    suffix = uuid.uuid4().hex[:6]
    db, cache = f"db-{suffix}", f"redis-{suffix}"
    docker(
        "run", "-d", "--name", db, "--network", docker_network,
        "--env", "POSTGRES_USER=app", "--env", "POSTGRES_PASSWORD=app-password",
        "--env", "POSTGRES_DB=app",
        "--health-cmd", "pg_isready -U app -d app", "--health-interval", "2s",
        "docker.io/library/postgres:16",
    )  # fmt: skip
    docker("run", "-d", "--name", cache, "--network", docker_network,
           "docker.io/library/redis:7")  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        health = docker("inspect", "-f", "{{.State.Health.Status}}", db).stdout
        if health.strip() == "healthy":
            break
        time.sleep(1)
    else:
        raise AssertionError(docker("logs", db, check=False).stderr)
    yield Backing(
        database_url=f"postgres://app:app-password@{db}:5432/app",
        redis_url=f"redis://{cache}:6379/0",
    )
    docker("rm", "-f", db, cache, check=False)
