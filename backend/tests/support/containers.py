"""The built image and the engines that run it: buildah, Docker Engine, podman."""

from __future__ import annotations

import os
import subprocess

from tests.support import processes
from tests.support.processes import ROOT

__all__ = ["BUILDAH_ENV", "DOCKER_IMAGE", "IMAGE", "ROOT", "buildah", "docker", "run"]
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
