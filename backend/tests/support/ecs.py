"""A small ECS (Fargate) task runner on Docker, for the platform tests.

It launches a task definition from deploy/ecs/ with the semantics ECS gives it:
`environment`; `secrets` resolved from a local map (as the agent resolves Secrets
Manager and SSM ARNs, failing the task when one cannot be resolved); `user`;
`readonlyRootFilesystem`; `linuxParameters.initProcessEnabled` and `capabilities`;
`mountPoints` on task
`volumes` as Fargate provides them: an empty root:root 0755 directory, unless the
image declares a VOLUME at that path, in which case the image's content and mode are
copied in (AWS "Bind mounts with Amazon ECS"); `healthCheck` (CMD / CMD-SHELL,
interval, timeout, retries, startPeriod); `stopTimeout`; `dependsOn` (START,
COMPLETE, SUCCESS, HEALTHY); `command`/`entryPoint` overrides. `awsvpc` networking is
a Docker network the test owns: each container reachable on its own address.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.containers import docker


@dataclass
class Task:
    """A running task: its containers by definition name."""

    family: str
    containers: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)

    def inspect(self, name: str) -> dict:
        return json.loads(docker("inspect", self.containers[name]).stdout)[0]

    def address(self, name: str, network: str) -> str:
        networks = self.inspect(name)["NetworkSettings"]["Networks"]
        return networks[network]["IPAddress"]

    def health(self, name: str) -> str:
        return self.inspect(name)["State"].get("Health", {}).get("Status", "none")

    def wait_healthy(self, name: str, timeout: float) -> float:
        """Wait until Docker (running the task's healthCheck) says healthy."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            state = self.inspect(name)["State"]
            if state["Health"]["Status"] == "healthy":
                return time.monotonic() - started
            assert state["Status"] == "running", (name, state, self.logs(name))
            time.sleep(1)
        raise AssertionError(f"{name} not healthy after {timeout}s:\n{self.logs(name)}")

    def wait_exit(self, name: str, timeout: float) -> int:
        result = docker("wait", self.containers[name], timeout=timeout)
        return int(result.stdout.strip())

    def logs(self, name: str) -> str:
        result = docker("logs", self.containers[name], check=False)
        return result.stdout + result.stderr

    def stop(self, name: str) -> float:
        """Stop as ECS does: SIGTERM, then SIGKILL after stopTimeout."""
        started = time.monotonic()
        docker("stop", self.containers[name], timeout=200)
        return time.monotonic() - started

    def remove(self) -> None:
        for container in self.containers.values():
            docker("rm", "-f", container, check=False)
        for volume in self.volumes:
            docker("volume", "rm", "-f", volume, check=False)


def image_volumes(image: str) -> set[str]:
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    return set((config.get("Volumes") or {}).keys())


def mount_flags(
    definition: dict, container: dict, image: str, scratch: Path, task: Task
) -> list[str]:
    """Fargate task volumes (no host path, no EFS) for one container."""
    declared = image_volumes(image)
    names = {volume["name"] for volume in definition.get("volumes", [])}
    flags = []
    for mount in container.get("mountPoints", []):
        assert mount["sourceVolume"] in names, f"unknown volume {mount['sourceVolume']}"
        path = mount["containerPath"]
        suffix = ",readonly" if mount.get("readOnly") else ""
        if path in declared:
            # Docker copies the image's content and mode into a new named volume,
            # which is what Fargate does for a path the image declares as VOLUME.
            volume = f"ecs-{uuid.uuid4().hex[:10]}"
            docker("volume", "create", volume)
            task.volumes.append(volume)
            flags += ["--mount", f"type=volume,source={volume},target={path}{suffix}"]
        else:
            directory = scratch / f"vol-{uuid.uuid4().hex[:10]}"
            directory.mkdir(mode=0o755)
            directory.chmod(0o755)
            flags += ["--mount", f"type=bind,source={directory},target={path}{suffix}"]
    return flags


def health_flags(check: dict | None) -> list[str]:
    if not check:
        return ["--no-healthcheck"]
    kind, *command = check["command"]
    if kind == "CMD":
        shell_command = shlex.join(command)
    else:
        assert kind == "CMD-SHELL", kind
        shell_command = command[0]
    return [
        "--health-cmd",
        shell_command,
        "--health-interval",
        f"{check.get('interval', 30)}s",
        "--health-timeout",
        f"{check.get('timeout', 5)}s",
        "--health-retries",
        str(check.get("retries", 3)),
        "--health-start-period",
        f"{check.get('startPeriod', 0)}s",
    ]


def run_task(
    definition: dict,
    *,
    image: str,
    network: str,
    secrets: dict[str, str],
    scratch: Path,
) -> Task:
    """Start every container of the task definition, honouring dependsOn."""
    task = Task(family=definition["family"])
    containers = {c["name"]: c for c in definition["containerDefinitions"]}
    pending = list(containers)
    while pending:
        ready = [n for n in pending if _dependencies_met(containers[n], task)]
        assert ready, f"dependsOn cannot be satisfied: {pending}"
        for name in ready:
            _start_container(
                definition, containers[name], image, network, secrets, scratch, task
            )
            pending.remove(name)
    return task


def _dependencies_met(container: dict, task: Task) -> bool:
    for dependency in container.get("dependsOn", []):
        name, condition = dependency["containerName"], dependency["condition"]
        if name not in task.containers:
            return False
        state = task.inspect(name)["State"]
        if condition == "COMPLETE" and state["Status"] != "exited":
            task.wait_exit(name, 600)
        if condition == "SUCCESS":
            assert task.wait_exit(name, 600) == 0, task.logs(name)
        if condition == "HEALTHY":
            task.wait_healthy(name, 600)
    return True


def _start_container(
    definition: dict,
    container: dict,
    image: str,
    network: str,
    secrets: dict[str, str],
    scratch: Path,
    task: Task,
) -> None:
    name = f"{definition['family']}-{container['name']}-{uuid.uuid4().hex[:6]}"
    flags = ["--name", name, "--network", network]
    if container.get("user"):
        flags += ["--user", container["user"]]
    if container.get("readonlyRootFilesystem"):
        flags.append("--read-only")
    linux = container.get("linuxParameters", {})
    if linux.get("initProcessEnabled"):
        flags.append("--init")
    for capability in linux.get("capabilities", {}).get("drop", []):
        flags.append(f"--cap-drop={capability}")
    for capability in linux.get("capabilities", {}).get("add", []):
        flags.append(f"--cap-add={capability}")
    for variable in container.get("environment", []):
        flags += ["--env", f"{variable['name']}={variable['value']}"]
    for secret in container.get("secrets", []):
        arn = secret["valueFrom"]
        assert arn in secrets, (
            f"ResourceInitializationError: unable to retrieve secret {arn}"
        )
        flags += ["--env", f"{secret['name']}={secrets[arn]}"]
    flags += mount_flags(definition, container, image, scratch, task)
    flags += health_flags(container.get("healthCheck"))
    if "stopTimeout" in container:
        flags += ["--stop-timeout", str(container["stopTimeout"])]
    if container.get("entryPoint"):
        flags += ["--entrypoint", container["entryPoint"][0]]
    command = list(container.get("entryPoint", [])[1:]) + list(
        container.get("command", [])
    )
    docker("run", "-d", *flags, image, *command)
    task.containers[container["name"]] = name
