"""The built image and the engines that run it: buildah, Docker Engine, podman."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support import processes
from tests.support.processes import BIN_DIR

# The image as buildah built it (make image), and its name inside Docker.
IMAGE = os.environ.get("IMAGE", "inventory-backend:test")
# Derived from IMAGE so that two checkouts testing different builds on one engine
# never overwrite each other's image.
DOCKER_IMAGE = f"{IMAGE.replace(':', '-')}:platform-test"
BUILDAH_ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}


def run(
    argv: list[str], *, timeout: float = 120, check: bool = True, **options
) -> subprocess.CompletedProcess[str]:
    """Run an engine command; by default a failure fails the test with its output."""
    return processes.run(argv, timeout=timeout, check=check, **options)


def docker(*args: str, timeout: float = 120, check: bool = True):
    return run(["docker", *args], timeout=timeout, check=check)


def buildah(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run buildah on the vfs store `make image` built into; the caller checks."""
    return run(["buildah", *args], env=BUILDAH_ENV, timeout=timeout, check=False)


def docker_image_from_buildah() -> str:
    """Hand the image under test from buildah's store to the Docker Engine."""
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


# Images the shipped files name that no registry serves here: built from Debian
# packages (tests/support/standins/) when the engine lacks the real one.
PGBOUNCER_IMAGE = "docker.io/edoburu/pgbouncer:1.23.1"
STANDINS = Path(__file__).with_name("standins")


def standin_image_ensure(*, image: str, containerfile: str) -> str:
    """Make `image` available to buildah/podman and, when it runs, Docker.

    A real image already present (pulled on a machine that reaches a registry) is
    used as it is; otherwise the stand-in is built under the same name.
    """
    present = buildah("inspect", "--type", "image", image).returncode == 0
    if not present:
        built = buildah(
            "bud", "--network", "host", "-q", "-t", image,
            "-f", str(STANDINS / containerfile), str(STANDINS),
            timeout=600,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr[-2000:]
    engine = run(["docker", "info"], check=False).returncode == 0
    if engine and docker("image", "inspect", image, check=False).returncode != 0:
        pushed = buildah("push", "-q", image, f"docker-daemon:{image}")
        assert pushed.returncode == 0, pushed.stderr[-2000:]
    return image


def docker_network_create() -> str:
    """Create a bridge network of the test's own (IPv4 and IPv6); return its name."""
    name = f"plat-{uuid.uuid4().hex[:8]}"
    subnet = (
        f"fd{uuid.uuid4().hex[:2]}:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::/64"
    )
    docker("network", "create", "--ipv6", "--subnet", subnet, name)
    return name


def docker_network_remove(name: str) -> None:
    """Remove the network and every container still on it."""
    leftovers = docker(
        "ps", "-aq", "--filter", f"network={name}", check=False
    ).stdout.split()
    if leftovers:
        docker("rm", "-f", *leftovers, check=False)
    docker("network", "rm", name, check=False)


def docker_cli_config(directory: Path) -> Path:
    """Make a DOCKER_CONFIG whose `docker compose` is the locked Compose v2 binary."""
    config = directory / "docker-config"
    plugins = config / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(BIN_DIR / "docker-compose")
    return config


@dataclass
class Backing:
    """PostgreSQL and Redis containers on the test's network (stand-in images)."""

    database_url: str
    redis_url: str
    containers: tuple[str, ...] = ()


def backing_start(network: str) -> Backing:
    """Start PostgreSQL and Redis on the network; return once PostgreSQL is healthy."""
    suffix = uuid.uuid4().hex[:6]
    db, cache = f"db-{suffix}", f"redis-{suffix}"
    docker(
        "run", "-d", "--name", db, "--network", network,
        "--env", "POSTGRES_USER=app", "--env", "POSTGRES_PASSWORD=app-password",
        "--env", "POSTGRES_DB=app",
        "--health-cmd", "pg_isready -U app -d app", "--health-interval", "2s",
        "docker.io/library/postgres:16",
    )  # fmt: skip
    docker("run", "-d", "--name", cache, "--network", network,
           "docker.io/library/redis:7")  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        health = docker("inspect", "-f", "{{.State.Health.Status}}", db).stdout
        if health.strip() == "healthy":
            break
        time.sleep(1)
    else:
        raise AssertionError(docker("logs", db, check=False).stderr)
    return Backing(
        database_url=f"postgres://app:app-password@{db}:5432/app",
        redis_url=f"redis://{cache}:6379/0",
        containers=(db, cache),
    )


def backing_remove(backing: Backing) -> None:
    docker("rm", "-f", *backing.containers, check=False)
