"""Deployment files: validated by each platform's own schema, and checked for the
values that keep a rollout safe (stop budgets, probes, non-root, secrets by ref)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from config.env import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
# Vendored with its licence and source (tests/schemas/README.md).
COMPOSE_SCHEMA = ROOT / "backend" / "tests" / "schemas" / "compose-spec.json"
GRACEFUL = REGISTRY["GUNICORN_GRACEFUL_TIMEOUT"].default
# The web role drains before its graceful stop: web budgets exceed both.
DRAIN = REGISTRY["WEB_DRAIN_SECONDS"].default
SOFT_SHUTDOWN = REGISTRY["CELERY_SOFT_SHUTDOWN_TIMEOUT"].default
ROLES = ("web", "worker", "beat", "migrate")
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
        'CMD ["python", "-m", "apps.core.healthcheck"]',
        'ENTRYPOINT ["tini", "--", "/app/scripts/entrypoint.sh"]',
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
        "APP_ROLE=web",
        "org.opencontainers.image.title",
    ):
        assert needle in text, needle
    assert "gosu" not in text


def test_dockerignore_keeps_secrets_tests_and_git_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[1] == "**"  # everything excluded unless listed
    assert "!backend/" in lines
    assert "backend/tests/" in lines
    assert "**/.env" in lines


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
    assert set(services) == {"db", "redis", *ROLES}
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
            "apps.core.healthcheck",
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
            "Job",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
        ]
    )
    for path, doc in documents:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
        assert path.name


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
    assert container["envFrom"] == [
        {"configMapRef": {"name": "inventory-config"}},
        {"secretRef": {"name": "inventory-secrets"}},
    ]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


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
    (container,) = worker["containers"]
    assert container["livenessProbe"]["exec"]["command"] == [
        "python",
        "-m",
        "apps.core.healthcheck",
    ]


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
