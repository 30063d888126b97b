"""Engines and images for the platform tests (`make platform-test`).

These tests start the shipped deployment files the way each platform runs them,
on a real Docker Engine (Compose, ECS, Railway) and podman (Kubernetes). They need
both engines and the image built by `make image`; `.ci/run` prepares them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import containers
from tests.support.containers import Backing


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The image under test, handed from buildah's store to the Docker Engine."""
    return containers.docker_image_from_buildah()


@pytest.fixture
def docker_network() -> Iterator[str]:
    """A bridge network of the test's own (IPv4 and IPv6), removed afterwards."""
    name = containers.docker_network_create()
    yield name
    containers.docker_network_remove(name)


@pytest.fixture
def docker_cli_config(tmp_path: Path) -> Path:
    """A DOCKER_CONFIG whose `docker compose` is the locked Compose v2 binary."""
    return containers.docker_cli_config(tmp_path)


@pytest.fixture
def backing_services(docker_network: str) -> Iterator[Backing]:
    """PostgreSQL and Redis containers on the test's network, removed afterwards."""
    backing = containers.backing_start(docker_network)
    yield backing
    containers.backing_remove(backing)
