"""deploy/ecs/ task definitions, unchanged, launched with Fargate's semantics."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from tests.support.containers import docker
from tests.support.ecs import Task, run_task
from tests.support.processes import ROOT

ROLES = ("web", "worker", "beat")


def definition(role: str) -> dict:
    return json.loads(
        (ROOT / "deploy/ecs" / f"task-definition-{role}.json").read_text()
    )


def secrets_map(backing) -> dict[str, str]:
    """What Secrets Manager and SSM hold for the ARNs the task definitions name."""
    values = {
        "django-secret-key": "ecs-" + "x9" * 30,
        "database-url": backing.database_url,
        "redis-url": backing.redis_url,
        "metrics-token": "ecs-metrics-token-" + "m" * 16,
        "sentry-dsn": "",
    }
    arns = {}
    for role in (*ROLES, "migrate"):
        for container in definition(role)["containerDefinitions"]:
            for secret in container.get("secrets", []):
                key = secret["valueFrom"].rsplit("/", 1)[1]
                arns[secret["valueFrom"]] = values[key]
    return arns


@pytest.mark.timeout(900)
def test_every_task_definition_starts_healthy_and_stops_in_budget(
    docker_image, docker_network, backing_services, tmp_path
) -> None:
    secrets = secrets_map(backing_services)
    tasks: list[Task] = []

    def launch(role: str) -> Task:
        task = run_task(
            definition(role),
            image=docker_image,
            network=docker_network,
            secrets=secrets,
            scratch=tmp_path,
        )
        tasks.append(task)
        return task

    figures: dict[str, float] = {}
    try:
        # The guide's step 4: migrate as a one-off task, continue only on exit 0.
        migrate = launch("migrate")
        assert migrate.wait_exit("migrate", 300) == 0, migrate.logs("migrate")
        assert "migrations applied; exiting" in migrate.logs("migrate")

        running = {role: launch(role) for role in ROLES}
        healthy: dict[str, float] = {}
        errors: list[BaseException] = []

        def wait(role: str) -> None:
            try:
                healthy[role] = running[role].wait_healthy(role, 240)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=wait, args=(r,)) for r in ROLES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        figures.update({f"{r}_healthy_s": round(s, 1) for r, s in healthy.items()})

        for role in ROLES:
            task = running[role]
            # /tmp came from the image's VOLUME: mode 1777, writable by uid 1000.
            mode = docker("exec", task.containers[role], "stat", "-c", "%a %U", "/tmp")
            assert mode.stdout.split() == ["1777", "root"]
            probe = docker(
                "exec", task.containers[role], "python", "-m", "runtime.healthcheck"
            )
            assert probe.stdout.startswith(f"healthy ({role})"), probe.stdout

        # The ALB's health check: the task's private IP as Host.
        address = running["web"].address("web", docker_network)
        ready = requests.get(f"http://{address}:5000/health/ready/", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ok", ready.text

        for role in ROLES:
            task = running[role]
            budget = definition(role)["containerDefinitions"][0]["stopTimeout"]
            took = task.stop(role)
            figures[f"{role}_stop_s"] = round(took, 1)
            state = task.inspect(role)["State"]
            assert took < budget, (role, took)
            assert state["ExitCode"] != 137, (role, state, task.logs(role))
        print("ecs figures:", json.dumps(figures))
    finally:
        for task in tasks:
            task.remove()


def test_fargate_volume_the_image_does_not_declare_is_root_owned(
    docker_image, docker_network, tmp_path
) -> None:
    # The emulation's other half, which made the shipped files fail before the
    # image declared /tmp: a task volume at a path without VOLUME is root:root 0755.
    spec = {
        "family": "probe",
        "volumes": [{"name": "scratch"}],
        "containerDefinitions": [
            {
                "name": "probe",
                "user": "1000:1000",
                "readonlyRootFilesystem": True,
                "entryPoint": ["sh", "-c"],
                "command": ["stat -c '%a %U' /scratch; touch /scratch/x"],
                "mountPoints": [
                    {"sourceVolume": "scratch", "containerPath": "/scratch"}
                ],
            }
        ],
    }
    task = run_task(
        spec, image=docker_image, network=docker_network, secrets={}, scratch=tmp_path
    )
    try:
        assert task.wait_exit("probe", 60) == 1
        logs = task.logs("probe")
        assert "755 root" in logs
        assert "Permission denied" in logs
    finally:
        task.remove()
