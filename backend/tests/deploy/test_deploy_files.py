"""Deployment files: validated by each platform's own schema, and checked for the
values that keep a rollout safe (stop budgets, probes, non-root, secrets by ref)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from runtime.env import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
# Vendored with its licence and source (tests/schemas/README.md).
COMPOSE_SCHEMA = ROOT / "backend" / "tests" / "schemas" / "compose-spec.json"
GRACEFUL = REGISTRY["GUNICORN_GRACEFUL_TIMEOUT"].default
# The web role drains before its graceful stop: web budgets exceed both.
DRAIN = REGISTRY["WEB_DRAIN_SECONDS"].default
SOFT_SHUTDOWN = REGISTRY["CELERY_SOFT_SHUTDOWN_TIMEOUT"].default
ROLES = ("web", "worker", "beat", "migrate")
# Where the Kubernetes manifests mount the Secret inventory-secrets.
K8S_SECRETS = "/run/secrets/inventory"
SECRET_NAMES = {
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "METRICS_TOKEN",
    "SENTRY_DSN",
    "POSTGRES_PASSWORD",
}


def _bin(name: str) -> str:
    path = shutil.which(name) or str(Path(__import__("sys").executable).parent / name)
    assert Path(path).exists(), f"{name} is not installed (make venv installs it)"
    return path


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [_bin("hadolint"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_essentials() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for needle in (
        "FROM ${PYTHON_IMAGE} AS venv",
        "--require-hashes",
        "pip uninstall --yes setuptools wheel pip",
        "COPY --from=venv /opt/venv /opt/venv",
        "USER 1000:1000",
        "EXPOSE 5000",
        "STOPSIGNAL SIGTERM",
        'CMD ["python", "-m", "runtime.healthcheck"]',
        'ENTRYPOINT ["tini", "--", "/app/scripts/entrypoint.sh"]',
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
        "APP_ROLE=web",
        "org.opencontainers.image.title",
    ):
        assert needle in text, needle
    assert "gosu" not in text


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "**"  # everything excluded unless listed
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed == {
        "backend/apps/",
        "backend/config/",
        "backend/runtime/",
        "backend/scripts/",
        "backend/manage.py",
        "backend/requirements/base.txt",
    }
    # Excluded again inside the allowed folders (the image test plants them).
    assert {"**/.env", "**/.env.*", "**/*.sqlite3"} <= set(lines)


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [
            _bin("check-jsonschema"),
            "--schemafile",
            str(COMPOSE_SCHEMA),
            str(ROOT / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _seconds(value: str) -> int:
    assert value.endswith("s")
    return int(value[:-1])


def test_compose_roles_health_and_stop_budgets() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    scale = {"pgbouncer", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
    assert set(services) == {"db", "redis", *ROLES, *scale}
    # The optional services start only with `--profile scale`.
    assert {n for n, s in services.items() if s.get("profiles") == ["scale"]} == scale
    assert services["db"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    for name, service in services.items():
        assert "healthcheck" in service, name
    for role in ROLES:
        assert services[role]["environment"]["APP_ROLE"] == role
        assert services[role]["env_file"] == ".env"
        assert services[role]["read_only"] is True
    assert services["migrate"]["restart"] == "no"
    for role in ("web", "worker", "beat"):
        assert services[role]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["web"]["ports"] == ["5000:5000"]
    assert services["beat"]["deploy"]["replicas"] == 1
    assert _seconds(services["web"]["stop_grace_period"]) > DRAIN + GRACEFUL
    assert _seconds(services["worker"]["stop_grace_period"]) > SOFT_SHUTDOWN


def test_compose_redis_never_evicts() -> None:
    """The Compose Redis carries the broker, RedBeat's lock and the gate counters;
    its replica (profile `scale`) becomes the primary after a failover."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("redis", "redis-replica"):
        command = services[name]["command"]
        policy = command.index("--maxmemory-policy")
        assert command[policy + 1] == "noeviction", name
        assert command[command.index("--appendonly") + 1] == "yes", name


@pytest.mark.parametrize("role", ROLES)
def test_ecs_task_definition_is_a_valid_register_request(role: str) -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    task = json.loads(
        (ROOT / "deploy" / "ecs" / f"task-definition-{role}.json").read_text()
    )
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(task, shape)
    assert not report.has_errors(), report.generate_report()

    (container,) = task["containerDefinitions"]
    env = {item["name"]: item["value"] for item in container["environment"]}
    assert env["APP_ROLE"] == role
    assert not SECRET_NAMES & set(env), "secrets must come from valueFrom"
    secrets = {item["name"]: item["valueFrom"] for item in container["secrets"]}
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(secrets)
    assert all(ref.startswith("arn:aws:") for ref in secrets.values())
    assert container["user"] == "1000:1000"
    assert container["readonlyRootFilesystem"] is True
    assert container["mountPoints"] == [
        {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}
    ]
    assert container["linuxParameters"]["initProcessEnabled"] is True
    # No Linux capability: the roles run as uid 1000 and need none (the platform
    # lane starts each task definition with them dropped).
    assert container["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["stopTimeout"] <= 120  # Fargate's maximum
    if role == "web":
        assert container["stopTimeout"] > DRAIN + GRACEFUL
        assert container["portMappings"][0]["containerPort"] == 5000
    if role == "worker":
        assert container["stopTimeout"] > SOFT_SHUTDOWN
    if role == "migrate":
        assert "healthCheck" not in container  # a one-shot task
    else:
        assert container["healthCheck"]["command"] == [
            "CMD",
            "python",
            "-m",
            "runtime.healthcheck",
        ]


def _k8s_documents(api_group: str | None = None) -> list[tuple[Path, dict]]:
    """Kubernetes' own kinds by default; `api_group`: a CRD's (KEDA) instead."""
    docs = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    if api_group is None:
        return [(p, d) for p, d in docs if not d["apiVersion"].startswith("keda.sh/")]
    return [(p, d) for p, d in docs if d["apiVersion"] == api_group]


def test_kubernetes_manifests_validate_strictly() -> None:
    import kubernetes_validate

    documents = _k8s_documents()
    kinds = sorted(doc["kind"] for _, doc in documents)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "Deployment",
            "Deployment",
            "Job",
            "Service",
            "Service",
            "PodDisruptionBudget",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
        ]
    )
    for path, doc in documents:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
        assert path.name


def test_kubernetes_network_policy_admits_only_the_ingress_and_prometheus() -> None:
    policies = {
        doc["metadata"]["name"]: doc["spec"]
        for _, doc in _k8s_documents()
        if doc["kind"] == "NetworkPolicy"
    }
    inventory = {"app.kubernetes.io/name": "inventory"}

    def sources(rule: dict) -> set[str]:
        return {
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for peer in rule["from"]
        }

    deny = policies["inventory-default-deny-ingress"]
    assert deny["podSelector"]["matchLabels"] == inventory
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    web = policies["inventory-web-from-ingress-and-prometheus"]
    assert web["podSelector"]["matchLabels"] == {
        **inventory,
        "app.kubernetes.io/component": "web",
    }
    (rule,) = web["ingress"]
    assert sources(rule) == {"ingress-nginx", "monitoring"}
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
    worker = policies["inventory-worker-metrics-from-prometheus"]
    (rule,) = worker["ingress"]
    assert sources(rule) == {"monitoring"}
    assert rule["ports"] == [{"protocol": "TCP", "port": 9808}]
    # PgBouncer: the inventory pods only, on its port.
    pooler = policies["inventory-pgbouncer-from-inventory"]
    assert pooler["podSelector"]["matchLabels"] == {
        **inventory,
        "app.kubernetes.io/component": "pgbouncer",
    }
    (rule,) = pooler["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": inventory}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    # With the policy, only the ingress reaches web: trust forwarded headers from
    # private addresses, never from anyone.
    (config,) = [d for _, d in _k8s_documents() if d["kind"] == "ConfigMap"]
    assert config["data"]["FORWARDED_ALLOW_IPS"] != "*"


def _keda_documents() -> dict[str, dict]:
    return {doc["kind"]: doc for _, doc in _k8s_documents(api_group="keda.sh/v1alpha1")}


def test_keda_scaled_object_scales_the_worker_on_its_queue() -> None:
    """KEDA's kinds are not in Kubernetes' schemas: the fields that matter, here."""
    keda = _keda_documents()
    assert sorted(keda) == ["ScaledObject", "TriggerAuthentication"]
    scaled = keda["ScaledObject"]
    spec = scaled["spec"]
    assert set(spec) == {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "triggers",
    }
    worker = _pod("inventory-worker")
    assert spec["scaleTargetRef"] == {
        "apiVersion": worker["apiVersion"],
        "kind": worker["kind"],
        "name": worker["metadata"]["name"],
    }
    assert spec["minReplicaCount"] == worker["spec"]["replicas"]
    assert spec["minReplicaCount"] < spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    config = next(doc for _, doc in _k8s_documents() if doc["kind"] == "ConfigMap")
    queues = config["data"].get("CELERY_WORKER_QUEUES", "celery").split(",")
    assert [trigger["metadata"]["listName"]] == queues
    # KEDA reads metadata values as strings.
    assert all(isinstance(v, str) for v in trigger["metadata"].values())
    assert int(trigger["metadata"]["listLength"]) > 0
    auth = keda["TriggerAuthentication"]
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {
        "address",
        "password",
    }


def test_ecs_worker_autoscaling_requests_are_valid() -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    requests = json.loads(
        (ROOT / "deploy" / "ecs" / "worker-autoscaling.json").read_text()
    )
    model = botocore.session.get_session().get_service_model("application-autoscaling")
    for operation, key in (
        ("RegisterScalableTarget", "registerScalableTarget"),
        ("PutScalingPolicy", "putScalingPolicy"),
    ):
        shape = model.operation_model(operation).input_shape
        report = ParamValidator().validate(requests[key], shape)
        assert not report.has_errors(), report.generate_report()
    policy = requests["putScalingPolicy"]
    target = requests["registerScalableTarget"]
    assert policy["ResourceId"] == target["ResourceId"]
    assert target["ResourceId"].endswith("/inventory-worker")
    metrics = policy["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]["Metrics"]
    names = {
        m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m
    }
    assert "celery_queue_messages" in names  # the worker's own /metrics
    assert [m["Id"] for m in metrics if m["ReturnData"]] == ["backlog_per_task"]


def test_watchdog_off_where_probes_replace_and_on_where_only_exits_do() -> None:
    default = REGISTRY["HEALTH_WATCHDOG_SECONDS"].default
    assert default > 0
    config = next(doc for _, doc in _k8s_documents() if doc["kind"] == "ConfigMap")
    assert config["data"]["HEALTH_WATCHDOG_SECONDS"] == "0"
    for role in ("worker", "beat"):
        task = json.loads(
            (ROOT / "deploy" / "ecs" / f"task-definition-{role}.json").read_text()
        )
        (container,) = task["containerDefinitions"]
        env = {item["name"]: item["value"] for item in container["environment"]}
        assert env["HEALTH_WATCHDOG_SECONDS"] == "0"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for role in ("worker", "beat"):
        service = compose["services"][role]
        assert service["restart"] == "unless-stopped"
        assert "HEALTH_WATCHDOG_SECONDS" not in json.dumps(service)
    for role in ("worker", "beat"):
        per_role = json.loads(
            (ROOT / "deploy" / "railway" / f"{role}.json").read_text()
        )
        assert per_role["deploy"]["restartPolicyType"] in {"ON_FAILURE", "ALWAYS"}


def _pod(name: str) -> dict:
    for _, doc in _k8s_documents():
        if doc["metadata"]["name"] == name and doc["kind"] in {"Deployment", "Job"}:
            return doc
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name", ["inventory-web", "inventory-worker", "inventory-beat", "inventory-migrate"]
)
def test_kubernetes_pods_are_locked_down(name: str) -> None:
    spec = _pod(name)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 1000
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["envFrom"] == [{"configMapRef": {"name": "inventory-config"}}]
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "secrets", "mountPath": K8S_SECRETS, "readOnly": True},
    ]
    assert {"name": "secrets", "secret": {"secretName": "inventory-secrets"}} in spec[
        "volumes"
    ]


def _guide_k8s_secret_keys() -> set[str]:
    """The keys the guide's `kubectl create secret generic inventory-secrets` makes."""
    section = _guide_section("Kubernetes")
    command = section.split("create secret generic inventory-secrets", 1)[1]
    command = command.split("\n\n", 1)[0]
    return set(re.findall(r"--from-literal=([A-Z_]+)=", command))


@pytest.mark.parametrize(
    "name", ["inventory-web", "inventory-worker", "inventory-beat", "inventory-migrate"]
)
def test_kubernetes_secrets_come_as_files_from_the_secret_volume(name: str) -> None:
    """Each secret is a *_FILE naming a key of the mounted Secret that the guide's
    `kubectl create secret` step creates; no secret value is in the environment."""
    (container,) = _pod(name)["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    files = {k: v for k, v in env.items() if k.endswith("_FILE")}
    keys = ["DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "METRICS_TOKEN"]
    if name == "inventory-migrate":
        # Pooled (configmap.yaml), the migrate role's lock and migrations go past
        # the pooler.
        keys.append("DATABASE_DIRECT_URL")
    assert files == {f"{key}_FILE": f"{K8S_SECRETS}/{key}" for key in keys}
    for variable in files:
        assert REGISTRY[variable.removesuffix("_FILE")].sensitive, variable
    assert not SECRET_NAMES & set(env)
    keys = {path.rsplit("/", 1)[1] for path in files.values()}
    assert keys <= _guide_k8s_secret_keys()


def test_kubernetes_web_probes_and_stop_budget() -> None:
    web = _pod("inventory-web")["spec"]["template"]["spec"]
    (container,) = web["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready/"
    # The drain replaces a preStop sleep: readiness fails at SIGTERM itself.
    assert "lifecycle" not in container
    assert web["terminationGracePeriodSeconds"] > DRAIN + GRACEFUL


def test_kubernetes_single_beat_and_worker_budget() -> None:
    beat = _pod("inventory-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    worker = _pod("inventory-worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > SOFT_SHUTDOWN


@pytest.mark.slow
def test_kubernetes_worker_liveness_probe_passes_live_and_fails_stale(
    start_entrypoint, production_env, tmp_path
) -> None:
    """The manifest's exec probe, run as the kubelet runs it, on a real worker: the
    role comes from `args` (the pod's APP_ROLE is the image's `web`), healthy while
    it consumes, unhealthy once its heartbeat is older than HEARTBEAT_STALE_SECONDS."""
    import os
    import signal
    import time

    from tests.support.env import with_venv_path
    from tests.support.processes import BACKEND_DIR
    from tests.support.wait import wait_until

    (container,) = _pod("inventory-worker")["spec"]["template"]["spec"]["containers"]
    command = container["livenessProbe"]["exec"]["command"]
    assert container["startupProbe"]["exec"]["command"] == command
    assert "APP_ROLE" not in json.dumps(container)
    # The pod's environment: the image's APP_ROLE, the ConfigMap and the container's
    # env; HEARTBEAT_DIR is the test's own directory instead of the shared /tmp.
    # The Secret volume: a file per key, as the kubelet writes them; the plain
    # variables of the test's environment emptied (empty counts as unset).
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        (secrets / key).write_text(production_env[key])
    (secrets / "METRICS_TOKEN").write_text("k8s-metrics-token-" + "t" * 16)
    pod_env = {
        "APP_ROLE": "web",
        "DJANGO_SECRET_KEY": "",
        "DATABASE_URL": "",
        "REDIS_URL": "",
        **_k8s_env("inventory-worker", secrets),
        "HEARTBEAT_DIR": str(tmp_path),
        "CELERY_WORKER_QUEUES": f"k8s-{os.urandom(4).hex()}",
    }
    worker = start_entrypoint(*container["args"], **pod_env)

    def probe() -> subprocess.CompletedProcess[str]:
        # A new process with the container's environment (secrets included), not
        # the entrypoint's: it never saw the `args` that chose the role.
        env = with_venv_path({**production_env, **pod_env})
        return subprocess.run(
            command,
            cwd=BACKEND_DIR,  # the image's WORKDIR, /app
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # Until the entrypoint has recorded the role the probe checks APP_ROLE's web (and
    # may find another process on port 5000): wait for the worker's answer.
    wait_until(
        lambda: probe().stdout.startswith("healthy (worker): heartbeat "),
        90,
        "a healthy liveness probe",
    )
    healthy = probe()
    assert healthy.returncode == 0, healthy.stdout
    assert healthy.stdout.startswith("healthy (worker): heartbeat "), healthy.stdout
    assert "canary from canary." in healthy.stdout

    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    stale_after = REGISTRY["HEARTBEAT_STALE_SECONDS"].default
    assert "HEARTBEAT_STALE_SECONDS" not in pod_env
    old = time.time() - stale_after - 15
    os.utime(tmp_path / "celery-worker.heartbeat", (old, old))
    stale = probe()
    assert stale.returncode == 1, stale.stdout
    assert stale.stdout.startswith("unhealthy (worker): heartbeat "), stale.stdout
    assert f"s old (limit {stale_after}s)" in stale.stdout


def test_railway_config() -> None:
    config = json.loads((ROOT / "railway.json").read_text())
    assert config["build"] == {"builder": "DOCKERFILE", "dockerfilePath": "Dockerfile"}
    deploy = config["deploy"]
    assert deploy["healthcheckPath"] == "/health/ready/"
    assert deploy["preDeployCommand"] == ["/app/scripts/entrypoint.sh migrate"]
    assert deploy["restartPolicyType"] == "ON_FAILURE"
    assert deploy["drainingSeconds"] > DRAIN + GRACEFUL
    for role in ("worker", "beat"):
        per_role = json.loads(
            (ROOT / "deploy" / "railway" / f"{role}.json").read_text()
        )
        assert "healthcheckPath" not in per_role["deploy"]
        assert "preDeployCommand" not in per_role["deploy"]


# --- PostgreSQL connection budget of the shipped files (#15) -------------------------

# PostgreSQL's default, and what small managed instances allow.
DEFAULT_MAX_CONNECTIONS = 100


def _k8s_env(name: str, secrets: Path | None = None) -> dict[str, str]:
    """What a pod of the Deployment sees: the ConfigMap, then the container's env.

    The *_FILE variables name files of the Secret volume: under `secrets` (a
    directory standing for the mount), or left out without it.
    """
    config = next(doc for _, doc in _k8s_documents() if doc["kind"] == "ConfigMap")
    (container,) = _pod(name)["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    for variable, path in list(env.items()):
        if variable.endswith("_FILE"):
            assert path.startswith(f"{K8S_SECRETS}/"), (variable, path)
            if secrets is None:
                del env[variable]
            else:
                env[variable] = str(secrets / path.rsplit("/", 1)[1])
    return {**config["data"], **env}


def _k8s_most_pods(name: str, most_replicas: int) -> int:
    """The scaler's maximum plus the rolling update's surge (absolute in our files)."""
    strategy = _pod(name)["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    return most_replicas + strategy["rollingUpdate"]["maxSurge"]


def _k8s_platform() -> dict[str, tuple[dict[str, str], int, float | None]]:
    hpa = next(
        doc for _, doc in _k8s_documents() if doc["kind"] == "HorizontalPodAutoscaler"
    )
    keda = _keda_documents()["ScaledObject"]["spec"]
    cpus = {
        name: float(
            _pod(name)["spec"]["template"]["spec"]["containers"][0]["resources"][
                "limits"
            ]["cpu"]
        )
        for name in ("inventory-web", "inventory-worker")
    }
    return {
        "web": (
            _k8s_env("inventory-web"),
            _k8s_most_pods("inventory-web", hpa["spec"]["maxReplicas"]),
            cpus["inventory-web"],
        ),
        "worker": (
            _k8s_env("inventory-worker"),
            _k8s_most_pods("inventory-worker", keda["maxReplicaCount"]),
            cpus["inventory-worker"],
        ),
    }


def _guide_section(title: str) -> str:
    guide = (ROOT / "DEPLOYMENT_GUIDE.md").read_text()
    return guide.split(f"\n## {title}", 1)[1].split("\n## ", 1)[0]


def _ecs_platform() -> dict[str, tuple[dict[str, str], int, float | None]]:
    # The services' counts are in the guide's create-service commands, not in a file.
    section = _guide_section("AWS ECS (Fargate)")
    services = {}
    for block in re.findall(r"aws ecs create-service (.+?)(?:\n\n|```)", section, re.S):
        name = re.search(r"--service-name inventory-(\w+)", block)[1]
        desired = int(re.search(r"--desired-count (\d+)", block)[1])
        percent = int(re.search(r"maximumPercent=(\d+)", block)[1])
        services[name] = (desired, percent)
    scaling = json.loads(
        (ROOT / "deploy" / "ecs" / "worker-autoscaling.json").read_text()
    )
    most = {
        "web": services["web"][0],
        "worker": max(
            services["worker"][0],
            scaling["registerScalableTarget"]["MaxCapacity"],
        ),
    }
    platform = {}
    for role in ("web", "worker"):
        task = json.loads(
            (ROOT / "deploy" / "ecs" / f"task-definition-{role}.json").read_text()
        )
        (container,) = task["containerDefinitions"]
        env = {item["name"]: item["value"] for item in container["environment"]}
        # ECS rounds maximumPercent down; 1024 CPU units are one vCPU.
        tasks = most[role] * services[role][1] // 100
        platform[role] = (env, tasks, int(task["cpu"]) / 1024)
    return platform


def _compose_platform() -> dict[str, tuple[dict[str, str], int, float | None]]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    example = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    platform = {}
    for role in ("web", "worker"):
        service = services[role]
        # `up` replaces a container (no overlap); no file scales a service.
        assert "replicas" not in service.get("deploy", {}), role
        assert "cpus" not in service.get("deploy", {}).get("resources", {}), role
        # The budget's variables: the file's public secrets (refused with a real
        # host, tests/config/test_public_secrets.py) are no part of it.
        settings = {k: v for k, v in example.items() if not REGISTRY[k].sensitive}
        platform[role] = ({**settings, **service["environment"]}, 1, None)
    return platform


def _railway_platform() -> dict[str, tuple[dict[str, str], int, float | None]]:
    # Variables: the guide's `railway variables --set` lines (test_railway.py plays
    # the same). Replicas: no file sets numReplicas (Railway's default is 1), and a
    # deployment overlaps the previous one: 2 containers at once.
    section = _guide_section("Railway")
    variables = {}
    for _, raw in re.findall(r"--set ([\"'])(.+?)\1", section):
        name, value = raw.split("=", 1)
        variables[name] = value
    for path in ("railway.json", "deploy/railway/worker.json"):
        assert "numReplicas" not in json.loads((ROOT / path).read_text())["deploy"]
    return {role: (variables, 2, None) for role in ("web", "worker")}


PLATFORMS = {
    "compose": _compose_platform,
    "ecs": _ecs_platform,
    "kubernetes": _k8s_platform,
    "railway": _railway_platform,
}


def _platform_budgets(platform: str, tmp_path: Path) -> list:
    """Each role's connection budget at the platform's shipped maxima."""
    from apps.core.db.budget import ConnectionBudget, connections_per_container
    from runtime.cpus import worker_count
    from runtime.env import load
    from tests.support.env import PRODUCTION_ENV

    budgets = []
    for role, (platform_env, most_containers, cpu_limit) in PLATFORMS[
        platform
    ]().items():
        values = {
            **platform_env,
            **PRODUCTION_ENV,
            "DATABASE_URL": "postgres://app@db.internal/app",
            "REDIS_URL": "redis://redis.internal:6379/0",
        }
        env = load(values)
        assert env.problems == [], (platform, role, env.problems)
        if role == "web":
            # The gunicorn workers the container starts: 2 x its CPU limit + 1, or
            # GUNICORN_MAX_WORKERS where nothing limits the CPUs it sees.
            if cpu_limit is None:
                workers = env["GUNICORN_WORKERS"] or env["GUNICORN_MAX_WORKERS"]
            else:
                cgroup = tmp_path / platform
                cgroup.mkdir(exist_ok=True)
                (cgroup / "cpu.max").write_text(f"{int(cpu_limit * 100000)} 100000")
                workers = worker_count(
                    configured=env["GUNICORN_WORKERS"],
                    maximum=env["GUNICORN_MAX_WORKERS"],
                    cgroup_root=cgroup,
                )
            env = load({**values, "GUNICORN_WORKERS": str(workers)})
        per_container, formula = connections_per_container(role=role, env=env)
        pooled = env["DB_POOL_MODE"] == "transaction"
        budget = ConnectionBudget(
            role=role,
            per_container=per_container,
            formula=formula,
            replicas=env["DB_EXPECTED_REPLICAS"],
            server_max=DEFAULT_MAX_CONNECTIONS,
            reserved=env["DB_RESERVED_CONNECTIONS"],
            pool_size=env["DB_POOL_SIZE"] if pooled else None,
            pool_max_clients=env["DB_POOL_MAX_CLIENTS"] if pooled else None,
        )
        assert "DB_EXPECTED_REPLICAS" in platform_env, (platform, role)
        assert budget.replicas == most_containers, (platform, budget.describe())
        budgets.append(budget)
    return budgets


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_shipped_replica_maxima_fit_the_connection_budget(platform, tmp_path) -> None:
    """DB_EXPECTED_REPLICAS is each service's most containers at once, and web plus
    worker at those counts fit max_connections 100 minus DB_RESERVED_CONNECTIONS, or
    through a pooler its client limit, with its pool within max_connections."""
    budgets = _platform_budgets(platform, tmp_path)
    for budget in budgets:
        assert not budget.exceeded, budget.describe()
    # The start-up check compares each role alone; together they share the server.
    total = sum(b.needed for b in budgets)
    if budgets[0].pooled:
        assert total <= budgets[0].pool_max_clients, [b.describe() for b in budgets]
    else:
        assert total <= budgets[0].available, [b.describe() for b in budgets]


def _pgbouncer_deployment() -> tuple[int, dict[str, str]]:
    documents = [
        d
        for d in yaml.safe_load_all(
            (ROOT / "deploy" / "k8s" / "pgbouncer.yaml").read_text()
        )
        if d
    ]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment["spec"]["replicas"], {
        item["name"]: item["value"] for item in container["env"]
    }


def test_kubernetes_scales_past_one_database_through_pgbouncer(tmp_path) -> None:
    """The shipped maxima are those of a pooled server (10 web, 10 workers), and the
    ConfigMap's pooler figures are what pgbouncer.yaml runs: the connection budget
    then counts what PostgreSQL and the pooler really hold."""
    hpa = yaml.safe_load((ROOT / "deploy" / "k8s" / "hpa.yaml").read_text())
    keda = _keda_documents()["ScaledObject"]
    assert hpa["spec"]["maxReplicas"] >= 10
    assert keda["spec"]["maxReplicaCount"] >= 10
    config = yaml.safe_load((ROOT / "deploy" / "k8s" / "configmap.yaml").read_text())[
        "data"
    ]
    replicas, pooler = _pgbouncer_deployment()
    assert replicas >= 2
    assert config["DB_POOL_MODE"] == "transaction"
    assert pooler["POOL_MODE"] == "transaction"
    assert int(config["DB_POOL_SIZE"]) == replicas * (
        int(pooler["DEFAULT_POOL_SIZE"]) + int(pooler["RESERVE_POOL_SIZE"])
    )
    assert int(config["DB_POOL_MAX_CLIENTS"]) == replicas * int(
        pooler["MAX_CLIENT_CONN"]
    )
    # A rollout never runs a third pooler, whose pool PostgreSQL would also hold.
    (deployment,) = [
        d
        for d in yaml.safe_load_all(
            (ROOT / "deploy" / "k8s" / "pgbouncer.yaml").read_text()
        )
        if d and d["kind"] == "Deployment"
    ]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    # Every client at the maxima (and beat's one) fits one pooler alone, the other
    # one restarting; the pools fit PostgreSQL's default max_connections.
    budgets = _platform_budgets("kubernetes", tmp_path)
    assert all(b.pooled for b in budgets)
    assert sum(b.needed for b in budgets) + 1 <= int(pooler["MAX_CLIENT_CONN"])
    assert budgets[0].pool_size <= budgets[0].available


def test_ecs_rds_proxy_requests_validate_and_outlive_django_connections() -> None:
    """deploy/ecs/rds-proxy.json: each request valid for the RDS API, a PostgreSQL
    proxy that requires TLS, and idle clients kept longer than Django keeps an idle
    connection (else the proxy drops connections Django still counts on)."""
    import botocore.session
    from botocore.validate import ParamValidator

    requests = json.loads((ROOT / "deploy" / "ecs" / "rds-proxy.json").read_text())
    model = botocore.session.get_session().get_service_model("rds")
    for operation in (
        "CreateDBProxy",
        "RegisterDBProxyTargets",
        "ModifyDBProxyTargetGroup",
    ):
        key = operation[0].lower() + operation[1:]
        shape = model.operation_model(operation).input_shape
        report = ParamValidator().validate(requests[key], shape)
        assert not report.has_errors(), report.generate_report()
    proxy = requests["createDBProxy"]
    assert proxy["EngineFamily"] == "POSTGRESQL"
    assert proxy["RequireTLS"] is True
    conn_max_age = REGISTRY["DB_CONN_MAX_AGE"].default
    assert proxy["IdleClientTimeout"] > conn_max_age
    pool = requests["modifyDBProxyTargetGroup"]["ConnectionPoolConfig"]
    assert 0 < pool["MaxConnectionsPercent"] <= 90


def _guide_compose_secrets_override() -> dict:
    """The guide's opt-in `docker-compose.secrets.yml` (section "Compose: secrets:")."""
    section = _guide_section("Secrets")
    (block,) = re.findall(
        r"```yaml\n(# docker-compose\.secrets\.yml.+?)```", section, re.DOTALL
    )
    return yaml.safe_load(block)


def test_guide_compose_secrets_override_is_valid_and_complete(tmp_path) -> None:
    """The override matches the Compose spec, gives every app service each secret
    as a file (the plain variable emptied, so .env's value is unset), and loads with
    .env.example's other values: the files are read, nothing is refused."""
    from runtime.env import load

    override = _guide_compose_secrets_override()
    path = tmp_path / "docker-compose.secrets.yml"
    path.write_text(yaml.safe_dump(override))
    result = subprocess.run(
        [_bin("check-jsonschema"), "--schemafile", str(COMPOSE_SCHEMA), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    declared = override["secrets"]
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(override["services"]) == {"db", *ROLES}  # redis has no password
    example = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    for role in ROLES:
        service = override["services"][role]
        env = service["environment"]
        files = {k: v for k, v in env.items() if k.endswith("_FILE")}
        # Every secret .env.example gives the app comes as a file instead.
        secrets_in_example = {k for k in example if REGISTRY[k].sensitive}
        secrets_in_example -= {"REDIS_URL"}  # no password in the Compose Redis
        assert {k.removesuffix("_FILE") for k in files} == secrets_in_example, role
        for variable, target in files.items():
            name = variable.removesuffix("_FILE")
            assert env[name] == "", (role, name)
            secret = target.removeprefix("/run/secrets/")
            assert secret in service["secrets"], (role, secret)
            assert declared[secret] == {"file": f"./secrets/{secret}"}
        # What the app of this role reads: .env, then the override, with the
        # secret files where the container sees them.
        (tmp_path / "secrets").mkdir(exist_ok=True)
        values = {**example, **base[role].get("environment", {}), **env}
        for variable, target in files.items():
            local = tmp_path / "secrets" / target.removeprefix("/run/secrets/")
            local.write_text(f"{role}-{variable}-" + "Zq7w" * 16 + "\n")
            values[variable] = str(local)
        config = load({**values, "ALLOWED_HOSTS": "inventory.example.com"})
        assert config.problems == [], (role, config.problems)
        assert config["DJANGO_SECRET_KEY"].startswith(f"{role}-DJANGO_SECRET_KEY_FILE-")
    db = override["services"]["db"]
    assert db["environment"] == {
        "POSTGRES_PASSWORD": "",
        "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
    }
    assert db["secrets"] == ["postgres_password"]
