"""Release drill: a rolling release and its rollback under load, behind a real balancer.

v1 is the image `make image` built; v2 is v1 with its application code replaced by
a copy of the source with a backward-compatible change: a migration adding a
nullable column that v2 writes and v1 ignores, and a new field in the API
(`channel` on reservations). v2 is layered on v1 (the code copied in as the
Dockerfile copies it, and compiled) rather than rebuilt from the Dockerfile: the
drill is about releasing a new version, the Dockerfile's build is proven by
`make image` and the image tests, and the layer takes seconds where a full build
took about five minutes of the platform lane. Two web containers, a worker and beat
run on the test's own Docker network with PostgreSQL and Redis; HAProxy (Debian's
package, on 127.0.0.1) routes to the web containers and health-checks
`/health/ready/` as an ALB target group does (interval, unhealthy and healthy
thresholds; no retries).

Under continuous load (reads and reservations) the drill runs v2's migrate role,
replaces the web containers one at a time (stop with the platform's grace period,
start v2, wait until the balancer sees it healthy), then rolls back to v1 the same
way. It asserts that no request failed, that every acknowledged reservation is in
the database exactly once and the ledger and stock add up, that v1 served against
v2's schema, and that both versions answered while they overlapped.

`make release-drill` runs this file alone; `make platform-test` runs it with the
other platform tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.containers import BUILDAH_ENV, IMAGE, docker
from tests.support.drill import clients_start
from tests.support.haproxy import Balancer
from tests.support.processes import ROOT

V2_IMAGE = f"{IMAGE}-v2"
V2_DOCKER_IMAGE = f"{V2_IMAGE.replace(':', '-')}:platform-test"
# The stop budget of docker-compose.yml's web service (the platform run here).
WEB_GRACE = int(
    yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"][
        "stop_grace_period"
    ].rstrip("s")
)
# Load: THREADS clients, each pacing itself to RATE requests per second.
THREADS = 12
RATE = 25
# HAProxy's checks, in ALB terms: interval 1 s, unhealthy threshold 2, healthy 2.
CHECK = "inter 1s fall 2 rise 2"


# --- v2: v1 with a copy of the source carrying a backward-compatible change --------

# The migration v2 adds; numbered after v1's last (checked when v2's source is made).
V2_MIGRATION = "0003_reservation_channel"
MIGRATION = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("inventory", "{latest}")]

    operations = [
        # Nullable, no default: PostgreSQL adds it without rewriting the table, and
        # v1's INSERTs, which do not name it, leave NULL.
        migrations.AddField(
            model_name="reservation",
            name="channel",
            field=models.CharField(max_length=32, null=True),
        ),
    ]
"""

V2_CHANGES = {
    "backend/apps/inventory/models.py": (
        "    request_fingerprint = models.CharField(max_length=64, blank=True)\n",
        "    request_fingerprint = models.CharField(max_length=64, blank=True)\n"
        "    channel = models.CharField(max_length=32, null=True)\n",
    ),
    "backend/apps/inventory/services.py": (
        "        request_fingerprint=fingerprint,\n",
        '        request_fingerprint=fingerprint,\n        channel="api",\n',
    ),
    "backend/apps/inventory/serializers.py": (
        "    expires_at = serializers.DateTimeField()\n",
        "    expires_at = serializers.DateTimeField()\n"
        "    channel = serializers.CharField(allow_null=True)\n",
    ),
}


def v2_source(directory: Path) -> Path:
    """Copy the application code and apply v2's change to the copy."""
    directory.mkdir()
    shutil.copytree(
        ROOT / "backend",
        directory / "backend",
        ignore=shutil.ignore_patterns(
            "tests", "__pycache__", "staticfiles", ".pytest_cache", ".ruff_cache"
        ),
    )
    for path, (old, new) in V2_CHANGES.items():
        target = directory / path
        text = target.read_text()
        assert text.count(old) == 1, f"v2's change no longer applies to {path}"
        target.write_text(text.replace(old, new))
    migrations = directory / "backend/apps/inventory/migrations"
    # v2 adds the next migration after v1's last one.
    latest = sorted(p.stem for p in migrations.glob("0*.py"))[-1]
    (migrations / f"{V2_MIGRATION}.py").write_text(
        MIGRATION.replace("{latest}", latest)
    )
    assert int(V2_MIGRATION[:4]) == int(latest[:4]) + 1, latest
    return directory


# v1 with v2's code: what the Dockerfile's last stage does with the source, again.
V2_CONTAINERFILE = f"""FROM localhost/{IMAGE}
USER 0
RUN rm -rf /app/apps /app/config
COPY --chown=0:0 backend/ /app/
RUN python -m compileall -q -j 0 /app
USER 1000:1000
"""


def v2_build_start(directory: Path, log: Path) -> subprocess.Popen:
    """Start building v2 (in the background while v1's stack comes up)."""
    (directory / "Containerfile").write_text(V2_CONTAINERFILE)
    command = (
        "buildah bud --format docker --network host "
        f"-t {V2_IMAGE} -f Containerfile . && "
        f"buildah push -q {V2_IMAGE} docker-daemon:{V2_DOCKER_IMAGE}"
    )
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=directory,
        env=BUILDAH_ENV,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


# --- The balancer --------------------------------------------------------------------


# --- Load ----------------------------------------------------------------------------


@dataclass
class Outcome:
    started: float
    latency: float
    kind: str
    status: int | None
    error: str | None = None
    version: str | None = None  # "v1" / "v2" for reservation answers
    reservation: str | None = None


@dataclass
class Load:
    url: str
    tokens: list[str]
    sku: str
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, index: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.tokens[index % 4]}"
        mine: list[str] = []
        step = 0
        while not self.stop.is_set():
            step += 1
            tick = time.monotonic()
            if step % 3 == 0:
                kind, method, path, body = (
                    "reserve",
                    "POST",
                    "/api/v1/reservations/",
                    {"sku": self.sku, "quantity": 1, "ttl_seconds": 3600},
                )
            elif step % 3 == 1 and mine:
                kind, method, path, body = (
                    "read_reservation",
                    "GET",
                    f"/api/v1/reservations/{mine[-1]}/",
                    None,
                )
            else:
                kind, method, path, body = (
                    "read_product",
                    "GET",
                    f"/api/v1/products/{self.sku}/",
                    None,
                )
            outcome = Outcome(started=tick, latency=0.0, kind=kind, status=None)
            try:
                response = session.request(
                    method, self.url + path, json=body, timeout=10
                )
                outcome.status = response.status_code
                if kind != "read_product" and response.ok:
                    answer = response.json()
                    outcome.version = "v2" if "channel" in answer else "v1"
                    if kind == "reserve" and response.status_code == 201:
                        outcome.reservation = answer["id"]
                        mine.append(answer["id"])
            except (requests.RequestException, ValueError) as exc:
                outcome.error = f"{type(exc).__name__}: {exc}"
            outcome.latency = time.monotonic() - tick
            self.outcomes.append(outcome)
            time.sleep(max(0.0, 1 / RATE - outcome.latency))

    def failures(self) -> list[Outcome]:
        expected = {"reserve": 201, "read_reservation": 200, "read_product": 200}
        return [o for o in self.outcomes if o.status != expected[o.kind]]


# --- The stack ---------------------------------------------------------------------


def app_env(backing) -> list[str]:
    variables = {
        "DJANGO_SECRET_KEY": "drill-" + "k9" * 30,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CORS_ALLOWED_ORIGINS": "https://app.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://app.example.com",
        "DATABASE_URL": backing.database_url,
        "REDIS_URL": backing.redis_url,
        # Only the balancer reaches the containers (as in the Kubernetes manifests).
        "FORWARDED_ALLOW_IPS": "*",
        "TRUSTED_PROXY_COUNT": "1",
        "GUNICORN_WORKERS": "2",
        # The load is four accounts at a few hundred requests per second.
        "API_THROTTLE_USER": "100000/minute",
        "RESERVATION_MAX_UNITS_PER_OWNER": "1000000",
        "LOG_FORMAT": "json",
    }
    flags: list[str] = []
    for name, value in variables.items():
        flags += ["--env", f"{name}={value}"]
    return flags


def start_role(image: str, network: str, env: list[str], name: str, role: str) -> str:
    docker(
        "run", "-d", "--name", name, "--network", network, *env,
        "--env", f"APP_ROLE={role}", "--read-only", "--tmpfs", "/tmp", image,
    )  # fmt: skip
    return name


def address(container: str, network: str) -> str:
    networks = json.loads(docker("inspect", container).stdout)[0]["NetworkSettings"][
        "Networks"
    ]
    return networks[network]["IPAddress"]


def shell(container: str, code: str) -> str:
    return docker(
        "exec", container, "python", "manage.py", "shell", "-c", code, timeout=120
    ).stdout


def psql(db: str, query: str, *, sku: str) -> str:
    """Run `query` in the database container; `:'sku'` in it is the drill's SKU."""
    result = subprocess.run(
        ["docker", "exec", "-i", db, "psql", "-U", "app", "-d", "app", "-tA",
         "-F", "|", "-v", "ON_ERROR_STOP=1", "-v", f"sku={sku}"],
        input=query, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.timeout(900)
def test_rolling_release_and_rollback_under_load(
    docker_image, docker_network, backing_services, tmp_path
) -> None:
    began = time.monotonic()
    build_log = tmp_path / "v2-build.log"
    build = v2_build_start(v2_source(tmp_path / "v2"), build_log)
    env = app_env(backing_services)
    suffix = uuid.uuid4().hex[:6]
    db = backing_services.database_url.split("@")[1].split(":")[0]
    figures: dict[str, object] = {}
    balancer = None
    load = None
    threads: list[threading.Thread] = []
    try:
        # 1. v1: migrate, two web, worker and beat; the balancer in front.
        migrated = docker(
            "run", "--rm", "--network", docker_network, *env, docker_image, "migrate",
            timeout=300,
        )  # fmt: skip
        assert "migrations applied; exiting" in migrated.stderr
        slots = {
            "web1": start_role(
                docker_image, docker_network, env, f"drill-web1-v1-{suffix}", "web"
            ),
            "web2": start_role(
                docker_image, docker_network, env, f"drill-web2-v1-{suffix}", "web"
            ),
        }
        start_role(
            docker_image, docker_network, env, f"drill-worker-{suffix}", "worker"
        )
        start_role(docker_image, docker_network, env, f"drill-beat-{suffix}", "beat")
        balancer = Balancer(
            tmp_path,
            {
                slot: f"{address(name, docker_network)}:5000"
                for slot, name in slots.items()
            },
            CHECK,
        )
        for slot in slots:
            balancer.wait_status(slot, "UP", timeout=180)

        tokens = json.loads(
            shell(
                slots["web1"],
                "import json\n"
                "from django.contrib.auth import get_user_model\n"
                "from rest_framework.authtoken.models import Token\n"
                "User = get_user_model()\n"
                "admin = User.objects.create_user('drill-admin', is_staff=True)\n"
                "users = [User.objects.create_user(f'drill-{i}') for i in range(4)]\n"
                "print(json.dumps([Token.objects.create(user=u).key "
                "for u in [admin, *users]]))",
            )
            .strip()
            .splitlines()[-1]
        )
        admin = {"Authorization": f"Token {tokens[0]}"}
        sku = f"DRILL-{suffix.upper()}"
        stock = 1_000_000
        created = requests.post(
            f"{balancer.url}/api/v1/products/",
            json={"sku": sku, "name": "Drill"}, headers=admin, timeout=10,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        restocked = requests.post(
            f"{balancer.url}/api/v1/products/{sku}/restock/",
            json={"quantity": stock}, headers=admin, timeout=10,
        )  # fmt: skip
        assert restocked.ok, restocked.text

        # v2's image, built meanwhile: waited for before the load starts, so that the
        # build's CPU does not throttle the load generator on a small machine.
        assert build.wait(timeout=600) == 0, build_log.read_text()[-3000:]
        figures["v2_build_done_after_s"] = round(time.monotonic() - began, 1)

        # 2. Load for the whole drill.
        load = Load(url=balancer.url, tokens=tokens[1:], sku=sku)
        load_started = time.monotonic()
        threads = clients_start(load.client, THREADS)

        # 3. v2's migrate role under load.
        migrated = docker(
            "run", "--rm", "--network", docker_network, *env, V2_DOCKER_IMAGE,
            "migrate", timeout=300,
        )  # fmt: skip
        assert f"Applying inventory.{V2_MIGRATION}... OK" in migrated.stdout
        schema_changed = time.monotonic()

        # 4. Replace web1, web2 with v2; then roll back to v1 the same way.
        windows: dict[str, tuple[float, float]] = {}

        def replace(slot: str, image: str, version: str) -> None:
            started = time.monotonic()
            old = slots[slot]
            docker("stop", "-t", str(WEB_GRACE), old, timeout=WEB_GRACE + 30)
            stopped = time.monotonic() - started
            state = json.loads(docker("inspect", old).stdout)[0]["State"]
            assert state["ExitCode"] == 0, state
            logs = docker("logs", old).stdout + docker("logs", old).stderr
            assert "draining: readiness answers 503" in logs
            assert "drain over; graceful stop" in logs
            assert "Shutting down: Master" in logs
            # The balancer took it out on the failing readiness, before it stopped.
            down = balancer.status(slot)
            assert down.startswith("DOWN"), down
            docker("rm", old)
            new = start_role(
                image, docker_network, env,
                f"drill-{slot}-{version}-{uuid.uuid4().hex[:4]}", "web",
            )  # fmt: skip
            slots[slot] = new
            balancer.command(
                f"set server web/{slot} addr {address(new, docker_network)} port 5000"
            )
            healthy = balancer.wait_status(slot, "UP", timeout=180)
            ended = time.monotonic()
            windows[f"{slot}->{version}"] = (started, ended)
            figures[f"{slot}->{version}"] = {
                "stop_s": round(stopped, 1),
                "balancer_state_after_stop": down,
                "new_healthy_after_s": round(healthy, 1),
                "total_s": round(ended - started, 1),
            }

        replace("web1", V2_DOCKER_IMAGE, "v2")
        overlap_began = time.monotonic()
        time.sleep(5)  # both versions serve behind the balancer
        overlap_ended = time.monotonic()
        replace("web2", V2_DOCKER_IMAGE, "v2")
        time.sleep(3)
        replace("web1", docker_image, "v1")
        replace("web2", docker_image, "v1")
        time.sleep(3)
    finally:
        if load is not None:
            load.stop.set()
        for thread in threads:
            thread.join(timeout=20)
        if balancer is not None:
            balancer.stop()
        if build.poll() is None:
            build.kill()
    load_seconds = time.monotonic() - load_started

    # 5. No request failed: no 5xx, no connection error, no timeout.
    outcomes = load.outcomes
    failures = load.failures()
    figures["requests"] = len(outcomes)
    figures["requests_per_s"] = round(len(outcomes) / load_seconds)
    figures["failures"] = len(failures)
    for name, (start, end) in windows.items():
        during = [o.latency for o in outcomes if start <= o.started <= end]
        figures[name]["requests"] = len(during)  # type: ignore[index]
        figures[name]["longest_latency_ms"] = round(max(during) * 1000)  # type: ignore[index]
    print("release drill figures:", json.dumps(figures))
    assert not failures, [vars(o) for o in failures[:10]]

    # 6. Both versions answered while they overlapped; v1 served on v2's schema.
    overlap = {
        o.version
        for o in outcomes
        if o.version and overlap_began <= o.started <= overlap_ended
    }
    assert overlap == {"v1", "v2"}, overlap
    acknowledged = {o.reservation: o for o in outcomes if o.reservation}
    v1_on_new_schema = [
        o
        for o in acknowledged.values()
        if o.version == "v1" and o.started > schema_changed
    ]
    assert v1_on_new_schema
    # ... also after the rollback, when v1 alone serves on the schema v2 left.
    assert any(o.started > windows["web2->v1"][1] for o in v1_on_new_schema)
    assert any(o.version == "v2" for o in acknowledged.values())
    # The v1 worker and beat ran through the whole release on v2's schema.
    for role in ("worker", "beat"):
        state = json.loads(docker("inspect", f"drill-{role}-{suffix}").stdout)[0]
        assert state["State"]["Running"], (role, state["State"])
        assert state["State"]["Health"]["Status"] == "healthy", (role, state["State"])

    # 7. No reservation lost or doubled; the ledger and the stock add up.
    rows = psql(
        db,
        "SELECT r.id, r.quantity, r.status, coalesce(r.channel, '') FROM "
        "inventory_reservation r JOIN inventory_product p ON p.id = r.product_id "
        "WHERE p.sku = :'sku'",
        sku=sku,
    ).splitlines()
    in_db = {row.split("|")[0]: row.split("|") for row in rows}
    assert len(rows) == len(in_db) == len(acknowledged)
    assert set(in_db) == set(acknowledged)
    for reservation, outcome in acknowledged.items():
        _, quantity, status, channel = in_db[reservation]
        assert (quantity, status) == ("1", "active")
        assert channel == ("api" if outcome.version == "v2" else ""), outcome
    on_hand, reserved = psql(
        db,
        "SELECT s.on_hand, s.reserved FROM inventory_stock s JOIN inventory_product p "
        "ON p.id = s.product_id WHERE p.sku = :'sku'",
        sku=sku,
    ).split("|")
    assert (int(on_hand), int(reserved)) == (stock, len(acknowledged))
    ledger = psql(
        db,
        "SELECT kind, count(*), sum(on_hand_delta), sum(reserved_delta) FROM "
        "inventory_stockmovement m JOIN inventory_product p ON p.id = m.product_id "
        "WHERE p.sku = :'sku' GROUP BY kind ORDER BY kind",
        sku=sku,
    ).splitlines()
    assert ledger == [
        f"reserve|{len(acknowledged)}|0|{len(acknowledged)}",
        f"restock|1|{stock}|0",
    ]
    figures["drill_s"] = round(time.monotonic() - began, 1)
    print("release drill figures:", json.dumps(figures))
