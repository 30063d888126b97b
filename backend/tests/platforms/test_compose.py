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
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.containers import (
    PGBOUNCER_IMAGE,
    docker,
    run,
    standin_image_ensure,
)
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


def api(
    token: str, method: str, path: str, headers: dict | None = None, **kwargs
) -> requests.Response:
    return requests.request(
        method,
        f"{BASE}/api/v1{path}",
        headers={"Authorization": f"Token {token}", **(headers or {})},
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
                f"{ROOT / 'backend/tests/support/tcp_proxy.py'}:/proxy/tcp_proxy.py:ro",
                f"{ROOT / 'backend/tests/support/freeze_proxy.py'}"
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
            "runtime.healthcheck",
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


def guide_scale_profile() -> tuple[list[str], str]:
    """The .env lines and the `up` command of the guide's Compose scale section."""
    text = (ROOT / "DEPLOYMENT_GUIDE.md").read_text()
    section = text.split("### Compose: PgBouncer and Sentinel", 1)[1].split("\n## ")[0]
    (env_block,) = re.findall(r"```env\n(.*?)```", section, flags=re.S)
    (command,) = [
        line
        for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S)
        for line in block.splitlines()
        if line.startswith("docker compose")
    ]
    return env_block.strip().splitlines(), command


def psql(stack: Stack, query: str) -> list[list[str]]:
    out = stack.compose(
        "exec", "-T", "db", "psql", "-U", "app", "-d", "app", "-At", "-F", "|",
        "-c", query,
    ).stdout  # fmt: skip
    return [line.split("|") for line in out.splitlines() if line]


@pytest.mark.timeout(900)
def test_compose_scale_profile(stack: Stack) -> None:
    """The `scale` profile as the guide enables it: PgBouncer carries every session
    of web, worker and beat; SIGKILL of the Redis primary under reservations is
    followed by Sentinel's promotion, and web, worker and beat carry on without a
    restart; the books agree."""
    standin_image_ensure(image=PGBOUNCER_IMAGE, containerfile="Containerfile.pgbouncer")
    lines, command = guide_scale_profile()
    assert command == "docker compose --profile scale up -d"
    stack.sh("cp .env.example .env")
    with (stack.directory / ".env").open("a") as env:
        env.write("\n".join(lines) + "\n")
    # Later commands (run, exec, logs, kill) see the profile's services too.
    stack.env["COMPOSE_PROFILES"] = "scale"
    figures: dict[str, float] = {}
    started = time.monotonic()
    stack.sh(command + " --no-build --wait", timeout=400)
    figures["up_to_healthy_s"] = round(time.monotonic() - started, 1)
    services = ("web", "worker", "beat", "pgbouncer", "redis", "redis-replica")
    for service in (*services, "sentinel-1", "sentinel-2", "sentinel-3"):
        state = stack.inspect(service)["State"]
        assert state["Health"]["Status"] == "healthy", (service, state)

    # Every client session of the app's database (but this psql's) comes from
    # PgBouncer's address: web, worker and beat hold none of their own. (Through
    # the pooler a server session's application_name is its last client's.)
    pooler = stack.inspect("pgbouncer")["NetworkSettings"]["Networks"]
    pooler_addresses = {network["IPAddress"] for network in pooler.values()}
    assert requests.get(f"{BASE}/health/ready/", timeout=10).json()["status"] == "ok"
    sessions = psql(
        stack,
        "SELECT host(client_addr), application_name FROM pg_stat_activity "
        "WHERE datname = 'app' AND backend_type = 'client backend' "
        "AND pid <> pg_backend_pid()",
    )
    assert sessions, "no session through the pooler"
    assert {address for address, _ in sessions} <= pooler_addresses, sessions

    # A token, as the guide's first-admin commands make it.
    text = (ROOT / "DEPLOYMENT_GUIDE.md").read_text()
    token = ""
    for line in _section_commands(text, "## First admin: superuser and API token"):
        line = line.replace("<password>", uuid.uuid4().hex).replace(
            "<username>", "admin"
        )
        found = re.search(r"Generated token ([0-9a-f]{40})", stack.sh(line).stdout)
        token = found.group(1) if found else token
    assert token
    sku = f"SCALE-{uuid.uuid4().hex[:6].upper()}"
    assert api(token, "POST", "/products/", json={"sku": sku, "name": "S"}).ok
    assert api(token, "POST", f"/products/{sku}/restock/", json={"quantity": 500}).ok

    # Reservations from one client while the primary is SIGKILLed.
    outcomes: list[tuple[float, int]] = []
    stop = threading.Event()

    def reserve() -> None:
        while not stop.is_set():
            try:
                status = api(
                    token,
                    "POST",
                    "/reservations/",
                    json={"sku": sku, "quantity": 1, "ttl_seconds": 600},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                ).status_code
            except requests.RequestException:
                status = 0
            outcomes.append((time.monotonic(), status))
            time.sleep(0.05)

    client = threading.Thread(target=reserve, daemon=True)
    client.start()
    time.sleep(3)

    def master() -> str:
        return stack.compose(
            "exec", "-T", "sentinel-1", "redis-cli", "-p", "26379",
            "sentinel", "get-master-addr-by-name", "mymaster", check=False,
        ).stdout.split("\n")[0]  # fmt: skip

    assert master() == "redis"

    def reconciles() -> int:
        # Also logged once at start, when no server was marked yet.
        return stack.compose("logs", "worker").stdout.count("Redis is another server")

    before = reconciles()
    restarts = {s: stack.inspect(s)["RestartCount"] for s in ("web", "worker", "beat")}
    stack.compose("kill", "redis")
    killed = time.monotonic()
    while master() != "redis-replica":
        assert time.monotonic() - killed < 60, stack.compose("logs", "sentinel-1")
        time.sleep(0.5)
    figures["replica_promoted_s"] = round(time.monotonic() - killed, 1)
    # Reservations are accepted after the promotion.
    while not [s for t, s in outcomes if t > time.monotonic() - 1 and s == 201]:
        assert time.monotonic() - killed < 90, outcomes[-5:]
        time.sleep(0.5)
    # Beat's server check sees another Redis and a worker reconciles on it: both
    # follow the new master (the broker and RedBeat through the sentinels).
    while reconciles() == before:
        assert time.monotonic() - killed < 120, stack.compose("logs", "beat").stdout
        time.sleep(2)
    figures["reconciled_on_new_master_s"] = round(time.monotonic() - killed, 1)
    time.sleep(2)
    stop.set()
    client.join(timeout=15)
    accepted = [s for _, s in outcomes].count(201)
    failed = [(round(t - killed, 1), s) for t, s in outcomes if s != 201]
    figures.update(requests=len(outcomes), accepted=accepted, failed=len(failed))
    print("compose scale profile figures:", json.dumps(figures))
    # The database path decides while the gate is away: nothing is refused.
    assert failed == [], failed
    assert {
        s: stack.inspect(s)["RestartCount"] for s in ("web", "worker", "beat")
    } == restarts

    # The books (the stack's only product): every acknowledged reservation is a
    # row; stock equals the ledger.
    ((rows,),) = psql(stack, "SELECT count(*) FROM inventory_reservation")
    assert int(rows) == accepted
    ((on_hand, reserved, ledger_on_hand, ledger_reserved),) = psql(
        stack,
        "SELECT (SELECT on_hand FROM inventory_stock), (SELECT reserved FROM "
        "inventory_stock), (SELECT sum(on_hand_delta) FROM inventory_stockmovement), "
        "(SELECT sum(reserved_delta) FROM inventory_stockmovement)",
    )
    assert (on_hand, reserved) == (ledger_on_hand, ledger_reserved)
    assert (int(on_hand), int(reserved)) == (500, accepted)
