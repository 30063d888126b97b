"""docker-compose.yml, unchanged, on a real Docker Engine with Compose v2.

As an operator follows the README and DEPLOYMENT_GUIDE.md: `cp .env.example .env`,
`docker compose up`, then every command of the guide's Compose section, verbatim
(extracted from the Markdown, so the docs cannot drift from what works). The only
change: `--build` becomes `--no-build`, because this machine builds with buildah.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.containers import docker, run
from tests.support.processes import ROOT

BASE = "http://127.0.0.1:5000"
COMPOSE_IMAGE = "inventory-backend:local"  # docker-compose.yml's `image:`


def _section_commands(text: str, heading: str) -> list[str]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command.startswith(("docker compose", "curl", "cp ")):
                commands.append(command)
    return commands


def guide_compose_commands() -> list[str]:
    """The shell commands of the guide's Compose section, in order, with the first
    admin's Compose commands (a section of their own) where the section sends the
    operator to them: before the first command that needs the token."""
    text = (ROOT / "DEPLOYMENT_GUIDE.md").read_text()
    commands = _section_commands(text, "## Local: `docker compose up`")
    admin = _section_commands(text, "## First admin: superuser and API token")
    assert admin
    assert all(c.startswith("docker compose") for c in admin), admin
    first_token_use = next(i for i, c in enumerate(commands) if "<token>" in c)
    return commands[:first_token_use] + admin + commands[first_token_use:]


class Stack:
    """One Compose project in a directory of its own, driven like an operator."""

    def __init__(self, directory: Path, config: Path) -> None:
        self.directory = directory
        self.project = f"inv{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "DOCKER_CONFIG": str(config),
            "COMPOSE_PROJECT_NAME": self.project,
        }

    def sh(self, command: str, timeout: float = 300, check: bool = True):
        return run(
            ["bash", "-c", command],
            env=self.env,
            cwd=self.directory,
            timeout=timeout,
            check=check,
        )

    def compose(self, *args: str, timeout: float = 300, check: bool = True):
        return run(
            ["docker", "compose", *args],
            env=self.env,
            cwd=self.directory,
            timeout=timeout,
            check=check,
        )

    def container(self, service: str) -> str:
        return self.compose("ps", "-aq", service).stdout.strip().splitlines()[0]

    def inspect(self, service: str) -> dict:
        return json.loads(docker("inspect", self.container(service)).stdout)[0]


@pytest.fixture
def stack(docker_image, docker_cli_config, tmp_path) -> Iterator[Stack]:
    docker("tag", docker_image, COMPOSE_IMAGE)
    directory = tmp_path / "checkout"
    directory.mkdir()
    shutil.copy(ROOT / "docker-compose.yml", directory)
    shutil.copy(ROOT / ".env.example", directory)
    stack = Stack(directory, docker_cli_config)
    yield stack
    # --remove-orphans: services a test added with an override file (the freeze
    # proxy) are not in docker-compose.yml; without it they and the network stay.
    stack.compose(
        "down", "-v", "--remove-orphans", "--timeout", "5", timeout=180, check=False
    )


def api(token: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{BASE}/api/v1{path}",
        headers={"Authorization": f"Token {token}"},
        timeout=10,
        **kwargs,
    )


@pytest.mark.timeout(1200)
def test_compose_stack_as_the_guide_runs_it(stack: Stack) -> None:
    commands = guide_compose_commands()
    assert commands[:2] == ["cp .env.example .env", "docker compose up -d --build"]
    figures: dict[str, float] = {}

    # 1. Up, as documented, until every service is healthy or exited 0.
    stack.sh(commands[0])
    started = time.monotonic()
    stack.sh(commands[1].replace("--build", "--no-build --wait"), timeout=400)
    figures["up_to_healthy_s"] = round(time.monotonic() - started, 1)
    assert stack.inspect("migrate")["State"]["ExitCode"] == 0
    for service in ("web", "worker", "beat", "db", "redis"):
        state = stack.inspect(service)["State"]
        assert state["Health"]["Status"] == "healthy", (service, state)

    # 2. The rest of the section, verbatim but for placeholders.
    password = uuid.uuid4().hex
    outputs: dict[str, str] = {}
    for command in commands[2:]:
        if "--build" in command or "down" in command:
            continue  # rebuild and teardown: exercised below with --no-build
        command = command.replace("<password>", password)
        command = command.replace("<username>", "admin")
        if "<token>" in command:
            command = command.replace("<token>", outputs["token"])
        result = stack.sh(command, timeout=180)
        outputs[command] = result.stdout + result.stderr
        found = re.search(
            r"Generated token ([0-9a-f]{40}) for user admin", result.stdout
        )
        if found:
            outputs["token"] = found.group(1)
    token = outputs["token"]
    assert any(
        "entrypoint[migrate]: migrations applied; exiting" in out
        for out in outputs.values()
    )
    assert requests.get(f"{BASE}/health/ready/", timeout=10).json()["status"] == "ok"
    metrics = [out for cmd, out in outputs.items() if "/metrics" in cmd]
    assert metrics
    assert "# HELP" in metrics[0]

    # 3. The API flow through the published port.
    sku = f"PLAT-{uuid.uuid4().hex[:6].upper()}"
    created = api(token, "POST", "/products/", json={"sku": sku, "name": "Platform"})
    assert created.status_code == 201, created.text
    assert api(token, "POST", f"/products/{sku}/restock/", json={"quantity": 5}).ok
    reserved = api(
        token,
        "POST",
        "/reservations/",
        json={"sku": sku, "quantity": 2, "ttl_seconds": 30},
    )
    assert reserved.status_code == 201, reserved.text
    reservation = reserved.json()["id"]
    assert api(token, "GET", f"/products/{sku}/").json()["available"] == 3

    # 4. Beat schedules the expiry sweep every 60 s; the worker runs it.
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        status = api(token, "GET", f"/reservations/{reservation}/").json()["status"]
        if status == "expired":
            break
        time.sleep(3)
    assert status == "expired"
    assert api(token, "GET", f"/products/{sku}/").json()["available"] == 5
    worker_logs = stack.compose("logs", "worker").stdout
    assert "inventory.expire_reservations" in worker_logs

    # 5. A crashed container (SIGKILL from outside, as the OOM killer does) is
    #    restarted by the engine (restart: unless-stopped) and healthy again.
    web = stack.inspect("web")
    os.kill(web["State"]["Pid"], 9)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = stack.inspect("web")
        # While the engine restarts the container its state has no Health yet.
        if (
            state["RestartCount"] >= 1
            and state["State"].get("Health", {}).get("Status") == "healthy"
        ):
            break
        time.sleep(2)
    assert state["RestartCount"] >= 1, state["State"]
    assert state["State"]["Health"]["Status"] == "healthy", state["State"]
    figures["web_restarted_healthy_s"] = round(120 - (deadline - time.monotonic()), 1)

    # 6. Each role stops gracefully inside its stop_grace_period.
    budgets = {"web": 45, "worker": 40, "beat": 15}
    graceful = {
        "web": "Shutting down: Master",
        "worker": "shutdown (MainProcess)",
        "beat": "beat: Releasing lock",
    }
    for service, budget in budgets.items():
        started = time.monotonic()
        stack.compose("stop", service, timeout=budget + 30)
        took = time.monotonic() - started
        figures[f"stop_{service}_s"] = round(took, 1)
        state = stack.inspect(service)["State"]
        assert took < budget, (service, took)
        assert state["ExitCode"] in (0, 143), state
        assert not state["OOMKilled"], state
        assert graceful[service] in stack.compose("logs", service).stdout

    # 7. down, then up again: the data survives, migrate has nothing to apply.
    stack.compose("down", "--timeout", "45", timeout=300)
    stack.compose("up", "-d", "--no-build", "--wait", timeout=400)
    assert api(token, "GET", f"/products/{sku}/").json()["on_hand"] == 5
    migrate_logs = stack.compose("logs", "migrate").stdout
    assert "No migrations to apply." in migrate_logs
    print("compose figures:", json.dumps(figures))


# The adaptation for the liveness test: a Redis proxy the test can freeze, between
# the worker and Redis (the worker's REDIS_URL points at it), and the smallest
# windows the registry allows so the test stays short. Everything else is the
# shipped docker-compose.yml.
FREEZE_OVERRIDE = {
    "services": {
        "redisproxy": {
            "image": COMPOSE_IMAGE,
            "entrypoint": ["python", "/proxy/freeze_proxy.py", "6379", "redis", "6379"],
            "volumes": [
                f"{ROOT / 'backend/tests/tcp_proxy.py'}:/proxy/tcp_proxy.py:ro",
                f"{ROOT / 'backend/tests/platforms/freeze_proxy.py'}"
                ":/proxy/freeze_proxy.py:ro",
            ],
            "depends_on": {"redis": {"condition": "service_healthy"}},
        },
        "worker": {
            "environment": {
                "APP_ROLE": "worker",
                "REDIS_URL": "redis://redisproxy:6379/0",
                "HEARTBEAT_STALE_SECONDS": "10",
                "HEALTH_WATCHDOG_SECONDS": "5",
            },
            "depends_on": {"redisproxy": {"condition": "service_started"}},
        },
    }
}


@pytest.mark.timeout(900)
def test_compose_replaces_a_worker_whose_consumer_froze(stack: Stack) -> None:
    """Frozen broker connections: unhealthy, the watchdog exits, Compose restarts it.

    The proxy freezes every connection, open or new, so the frozen worker cannot
    recover by reconnecting. It thaws once the engine has restarted the container:
    the old process and all its connections are gone by then, and the new process
    must find a working broker, as it would in the incident this models.
    """
    (stack.directory / "freeze.yml").write_text(json.dumps(FREEZE_OVERRIDE))
    files = ("-f", "docker-compose.yml", "-f", "freeze.yml")
    stack.sh("cp .env.example .env")
    stack.compose(*files, "up", "-d", "--no-build", "--wait", "worker", timeout=400)

    def probe() -> str:
        result = stack.compose(
            *files,
            "exec",
            "-T",
            "worker",
            "python",
            "-m",
            "apps.core.healthcheck",
            check=False,
            timeout=30,
        )
        return result.stdout.strip()

    deadline = time.monotonic() + 60
    while "canary from canary." not in probe():
        assert time.monotonic() < deadline, probe()
        time.sleep(1)
    assert stack.inspect("worker")["RestartCount"] == 0

    stack.compose(*files, "kill", "-s", "SIGUSR1", "redisproxy")
    frozen = time.monotonic()
    figures: dict[str, float] = {}
    while time.monotonic() - frozen < 120:
        state = stack.inspect("worker")
        if state["RestartCount"] >= 1:
            figures.setdefault("frozen_to_restarted_s", time.monotonic() - frozen)
            break
        if "unhealthy (worker)" in probe():
            figures.setdefault("frozen_to_unhealthy_s", time.monotonic() - frozen)
        time.sleep(0.5)
    assert "frozen_to_unhealthy_s" in figures, stack.compose("logs", "worker").stdout
    assert "frozen_to_restarted_s" in figures, stack.compose("logs", "worker").stdout
    logs = stack.compose("logs", "worker").stdout
    assert "exiting so that it is replaced" in logs
    stack.compose(*files, "kill", "-s", "SIGUSR2", "redisproxy")

    while time.monotonic() - frozen < 300:
        state = stack.inspect("worker")
        if "canary from canary." in probe():
            figures["frozen_to_consuming_again_s"] = time.monotonic() - frozen
            break
        time.sleep(1)
    assert "frozen_to_consuming_again_s" in figures, stack.compose("logs").stdout
    assert state["RestartCount"] == 1
    figures = {k: round(v, 1) for k, v in figures.items()}
    print("compose worker liveness figures (window 10 s, watchdog 5 s):")
    print(json.dumps(figures))
    # The windows this test configures, with room for a loaded machine.
    assert figures["frozen_to_unhealthy_s"] <= 10 + 5
