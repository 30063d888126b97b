"""deploy/k8s/ manifests run with `podman kube play`, their probes run for real.

podman 4.3's kube play lacks two things these manifests use, so the test plays a
copy with exactly these adaptations (and nothing else):
1. The Secret `inventory-secrets` -> a ConfigMap of that name, and the `secret`
   volume that mounts it -> a `configMap` volume of it (same keys, same files under
   /run/secrets/inventory/, read through the *_FILE variables): kube play's secrets
   need podman's own secret format. The values are what the guide's
   `kubectl create secret` step puts in.
2. The migrate `Job` -> its pod template as a `Pod` (restartPolicy: Never): kube play
   has no kind Job.
3. Deployments' `replicas` -> 1 and containers' `ports` dropped: podman 4.3
   publishes every containerPort on the host, so a second replica collides on the
   port, and PgBouncer's 5432 with the host's PostgreSQL (Kubernetes gives each pod
   its own address and publishes nothing; the test reaches pods by address).
4. Volume names made unique per manifest: podman 4.3 backs an `emptyDir` with a
   volume named after it, which every pod using that name shares (Kubernetes gives
   each pod its own).
The image tag placeholder is replaced, as the guide's step 2 tells operators to.
PgBouncer (pgbouncer.yaml) runs from its image, or where no registry serves it,
from the stand-in tests/support/standins builds with the same interface; kube play
has no Services, so the app reaches the pooler pod by its address, as the Service
would route it.
Probes: podman runs none on its own here (no systemd timers), so each container's
startup, readiness and liveness probes are run as the kubelet runs them: exec probes
inside the container with its environment (`podman exec`), HTTP probes against the
pod's address; `podman healthcheck run` runs the one podman converted.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.containers import (
    IMAGE,
    PGBOUNCER_IMAGE,
    run,
    standin_image_ensure,
)
from tests.support.processes import ROOT

K8S = ROOT / "deploy" / "k8s"
ROLES = ("web", "worker", "beat")


def podman(*args: str, timeout: float = 180, check: bool = True):
    return run(["podman", *args], timeout=timeout, check=check)


def load(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def container_spec(name: str) -> dict:
    (document,) = [d for d in load(name) if d["kind"] in ("Deployment", "Job")]
    template = document["spec"].get("template", document["spec"])
    return template["spec"]["containers"][0]


@pytest.fixture
def podman_network() -> Iterator[str]:
    assert shutil.which("podman"), (
        "podman is missing: apt-get install podman runc catatonit"
    )
    name = f"k8s-{uuid.uuid4().hex[:8]}"
    podman("network", "create", name)
    yield name
    podman("pod", "rm", "-af", "-t", "0", check=False, timeout=300)
    podman("network", "rm", "-f", name, check=False)


def address(container: str, network: str) -> str:
    data = json.loads(podman("inspect", container).stdout)[0]
    return data["NetworkSettings"]["Networks"][network]["IPAddress"]


def start_backing(network: str) -> tuple[str, str, str]:
    """Start PostgreSQL and Redis; return their URLs and the database container."""
    suffix = uuid.uuid4().hex[:6]
    db, cache = f"kdb-{suffix}", f"kredis-{suffix}"
    podman(
        "run", "-d", "--name", db, "--network", network,
        "-e", "POSTGRES_USER=app", "-e", "POSTGRES_PASSWORD=app-password",
        "-e", "POSTGRES_DB=app", "docker.io/library/postgres:16",
    )  # fmt: skip
    podman(
        "run", "-d", "--name", cache, "--network", network, "docker.io/library/redis:7"
    )
    deadline = time.monotonic() + 120
    while podman("exec", db, "pg_isready", "-U", "app", check=False).returncode:
        assert time.monotonic() < deadline, podman("logs", db, check=False).stderr
        time.sleep(1)
    return (
        f"postgres://app:app-password@{address(db, network)}:5432/app",
        f"redis://{address(cache, network)}:6379/0",
        db,
    )


def adapted(name: str, directory: Path) -> Path:
    """Write the test copy of one manifest (see the module docstring)."""
    # Workloads only: kube play has no Service or PodDisruptionBudget to act on.
    documents = [d for d in load(name) if d["kind"] in ("Deployment", "Job", "Pod")]
    out = []
    for document in documents:
        if document["kind"] == "Job":
            template = document["spec"]["template"]
            document = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {**document["metadata"], **template.get("metadata", {})},
                "spec": template["spec"],
            }
            document["metadata"]["name"] = "inventory-migrate"
        if document["kind"] == "Deployment":
            document["spec"]["replicas"] = 1
        pod = document["spec"].get("template", document)["spec"]
        unique = {
            v["name"]: f"{v['name']}-{uuid.uuid4().hex[:6]}"
            for v in pod.get("volumes", [])
        }
        for volume in pod.get("volumes", []):
            volume["name"] = unique[volume["name"]]
            if "secret" in volume:
                volume["configMap"] = {"name": volume.pop("secret")["secretName"]}
        for container in pod["containers"]:
            if "inventory-backend" in container["image"]:
                container["image"] = f"localhost/{IMAGE}"
            container.pop("ports", None)
            for mount in container.get("volumeMounts", []):
                mount["name"] = unique[mount["name"]]
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    source["configMapRef"] = source.pop("secretRef")
        out.append(document)
    path = directory / name
    path.write_text(yaml.safe_dump_all(out))
    return path


def secret_as_configmap(directory: Path, name: str, data: dict[str, str]) -> Path:
    path = directory / f"{name}-as-configmap.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": data,
            }
        )
    )
    return path


def secrets_configmap(
    directory: Path, database_url: str, redis_url: str, direct_url: str
) -> Path:
    """The guide's "inventory-secrets": DATABASE_URL is the pooler."""
    return secret_as_configmap(
        directory,
        "inventory-secrets",
        {
            "DJANGO_SECRET_KEY": "k8s-" + "q7" * 30,
            "DATABASE_URL": database_url,
            "DATABASE_DIRECT_URL": direct_url,
            "REDIS_URL": redis_url,
            "METRICS_TOKEN": "k8s-metrics-token-" + "t" * 16,
        },
    )


def play(path: Path, network: str, configmaps: list[Path]) -> None:
    flags = []
    for configmap in configmaps:
        flags += ["--configmap", str(configmap)]
    podman("kube", "play", "--network", network, *flags, str(path), timeout=300)


def pod_container(pod_prefix: str, name: str) -> str:
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    matches = [n for n in names if n.startswith(pod_prefix) and n.endswith(f"-{name}")]
    assert len(matches) == 1, (pod_prefix, name, names)
    return matches[0]


def run_probe(probe: dict, container: str, network: str) -> tuple[bool, str]:
    """Run one probe as the kubelet does; return (passed, what it said)."""
    if "exec" in probe:
        result = podman("exec", container, *probe["exec"]["command"], check=False)
        return result.returncode == 0, result.stdout.strip()
    get = probe["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        port = 5000  # the named container port "http"
    url = f"http://{address(container, network)}:{port}{get['path']}"
    try:
        response = requests.get(url, timeout=probe.get("timeoutSeconds", 1))
    except requests.RequestException as exc:
        return False, f"GET {url}: {exc}"
    said = f"GET {url} -> {response.status_code} {response.text[:300]}"
    return 200 <= response.status_code < 400, said


def wait_probe(probe: dict, container: str, network: str) -> tuple[float, str]:
    """Run a probe every periodSeconds until it passes or failureThreshold is spent."""
    period = probe.get("periodSeconds", 10)
    attempts = probe.get("failureThreshold", 3)
    started = time.monotonic()
    said = ""
    for _ in range(attempts):
        passed, said = run_probe(probe, container, network)
        if passed:
            return time.monotonic() - started, said
        time.sleep(period)
    raise AssertionError(f"probe failed {attempts} times on {container}: {said}")


@pytest.mark.timeout(900)
def test_manifests_play_and_every_probe_passes(podman_network, tmp_path) -> None:
    """PgBouncer's manifest first, then migrate, web, worker and beat: every probe
    passes, every app session reaches PostgreSQL from the pooler, and each pod stops
    within its grace period."""
    direct_url, redis_url, db = start_backing(podman_network)
    figures: dict[str, float] = {}

    # PgBouncer first (as the guide orders it), from its own Secret.
    standin_image_ensure(image=PGBOUNCER_IMAGE, containerfile="Containerfile.pgbouncer")
    pooler_secret = secret_as_configmap(
        tmp_path, "inventory-pgbouncer", {"DATABASE_URL": direct_url}
    )
    play(adapted("pgbouncer.yaml", tmp_path), podman_network, [pooler_secret])
    pooler = pod_container("inventory-pgbouncer", "pgbouncer")
    pooler_spec = container_spec("pgbouncer.yaml")
    wait_probe(pooler_spec["readinessProbe"], pooler, podman_network)
    passed, said = run_probe(pooler_spec["livenessProbe"], pooler, podman_network)
    assert passed, said
    pooler_address = address(pooler, podman_network)
    database_url = direct_url.replace(address(db, podman_network), pooler_address)
    configmaps = [
        K8S / "configmap.yaml",
        secrets_configmap(tmp_path, database_url, redis_url, direct_url),
    ]

    play(adapted("migrate-job.yaml", tmp_path), podman_network, configmaps)
    migrate = pod_container("inventory-migrate", "migrate")
    code = podman("wait", migrate, timeout=300).stdout.strip()
    logs = podman("logs", migrate).stderr + podman("logs", migrate).stdout
    assert code == "0", logs
    assert "migrations applied; exiting" in logs

    started = time.monotonic()
    for role in ROLES:
        play(adapted(f"{role}.yaml", tmp_path), podman_network, configmaps)
    for role in ROLES:
        container = pod_container(f"inventory-{role}", role)
        spec = container_spec(f"{role}.yaml")
        probes = {
            kind: spec[kind]
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in spec
        }
        assert "startupProbe" in probes
        assert "livenessProbe" in probes
        _, said = wait_probe(probes["startupProbe"], container, podman_network)
        figures[f"{role}_started_s"] = round(time.monotonic() - started, 1)
        for kind, probe in probes.items():
            passed, said = run_probe(probe, container, podman_network)
            assert passed, (role, kind, said)
            if "exec" in probe:
                # Passed for the right reason: the probe checked this role.
                assert said.startswith(f"healthy ({role}): "), (role, kind, said)
        # podman's own conversion of an exec liveness probe. (An httpGet probe it
        # turns into `curl` inside the container; the image ships no curl, and the
        # kubelet makes that request itself, as run_probe does above.)
        if "exec" in probes["livenessProbe"]:
            converted = podman("healthcheck", "run", container, check=False)
            assert converted.returncode == 0, (role, converted.stdout)

    # Web, worker and beat reached PostgreSQL only through the pooler: every
    # session of theirs comes from the pooler's address.
    sessions = podman(
        "exec", db, "psql", "-U", "app", "-d", "app", "-At", "-F", " ", "-c",
        "SELECT application_name, client_addr FROM pg_stat_activity"
        " WHERE application_name LIKE 'backend-%'",
    ).stdout.split("\n")  # fmt: skip
    by_role: dict[str, set[str]] = {}
    for line in filter(None, sessions):
        name, _, client = line.partition(" ")
        by_role.setdefault(name, set()).add(client)
    assert "backend-web" in by_role, sessions
    for name in ("backend-web", "backend-worker", "backend-beat"):
        assert by_role.get(name, {pooler_address}) == {pooler_address}, by_role

    for role in ROLES:
        container = pod_container(f"inventory-{role}", role)
        (document,) = load(f"{role}.yaml")
        grace = document["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        stopped = time.monotonic()
        podman("stop", "-t", str(grace), container, timeout=grace + 60)
        figures[f"{role}_stop_s"] = round(time.monotonic() - stopped, 1)
        state = json.loads(podman("inspect", container).stdout)[0]["State"]
        assert state["ExitCode"] != 137, (role, state)
        assert figures[f"{role}_stop_s"] < grace
    print("kubernetes figures:", json.dumps(figures))
