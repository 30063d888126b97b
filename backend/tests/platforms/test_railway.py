"""railway.json and deploy/railway/*.json, run with Railway's deploy semantics.

Railway, for a Dockerfile service: the pre-deploy command runs in a container of its
own with the service's variables, its string taking the image's ENTRYPOINT's place
(exec form, no shell); then the service starts with the image's ENTRYPOINT/CMD and a
platform-chosen PORT; the deployment goes live once `healthcheckPath` answers 200,
polled until `healthcheckTimeout`, from Railway's health checker
(Host: healthcheck.railway.app). The private network between services is IPv6.
The variables are the guide's own `railway variables --set` lines, with the reference
variables resolved to this test's PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import random
import re
import shlex
import time
import uuid

import pytest
import requests

from tests.support.containers import docker
from tests.support.processes import ROOT

RAILWAY_HEALTHCHECK_HOST = "healthcheck.railway.app"


def guide_variables(backing) -> dict[str, str]:
    text = (ROOT / "DEPLOYMENT_GUIDE.md").read_text()
    section = text.split("## Railway", 1)[1].split("\n## ", 1)[0]
    variables = {}
    for raw in re.findall(r"--set ([\"'])(.+?)\1", section):
        name, value = raw[1].split("=", 1)
        variables[name] = value
    variables["DATABASE_URL"] = backing.database_url
    variables["REDIS_URL"] = backing.redis_url
    variables["DJANGO_SECRET_KEY"] = "rw-" + "z5" * 30  # $SECRET_KEY in the guide
    variables["METRICS_TOKEN"] = "rw-metrics-token-" + "r" * 16
    return variables


def env_flags(variables: dict[str, str]) -> list[str]:
    flags = []
    for name, value in variables.items():
        flags += ["--env", f"{name}={value}"]
    return flags


def config(path: str) -> dict:
    return json.loads((ROOT / path).read_text())["deploy"]


def start_service(image, network, variables, deploy: dict, name: str) -> str:
    flags = ["--name", name, "--network", network, *env_flags(variables)]
    if deploy.get("restartPolicyType") == "ON_FAILURE":
        flags += [
            "--restart",
            f"on-failure:{deploy.get('restartPolicyMaxRetries', 10)}",
        ]
    command: list[str] = []
    if deploy.get("startCommand"):
        argv = shlex.split(deploy["startCommand"])
        flags += ["--entrypoint", argv[0]]
        command = argv[1:]
    docker("run", "-d", *flags, image, *command)
    return name


@pytest.mark.timeout(600)
def test_railway_services_deploy_as_railway_deploys_them(
    docker_image, docker_network, backing_services
) -> None:
    shared = guide_variables(backing_services)
    assert {"ALLOWED_HOSTS", "TRUSTED_PROXY_COUNT", "FORWARDED_ALLOW_IPS"} <= set(
        shared
    )
    web_deploy = config("railway.json")
    suffix = uuid.uuid4().hex[:6]
    figures: dict[str, float] = {}
    web_vars = {**shared, "APP_ROLE": "web"}

    # 1. Pre-deploy, in its own container, with the service's variables.
    for command in web_deploy["preDeployCommand"]:
        argv = shlex.split(command)
        result = docker(
            "run", "--rm", "--network", docker_network, *env_flags(web_vars),
            "--entrypoint", argv[0], docker_image, *argv[1:], timeout=300,
        )  # fmt: skip
        assert "migrations applied; exiting" in result.stderr + result.stdout

    # 2. The web service with a platform-chosen PORT, live once the path answers.
    port = random.randint(6000, 9000)
    web = start_service(
        docker_image, docker_network, {**web_vars, "PORT": str(port)}, web_deploy,
        f"rw-web-{suffix}",
    )  # fmt: skip
    inspect = json.loads(docker("inspect", web).stdout)[0]
    network = inspect["NetworkSettings"]["Networks"][docker_network]
    started = time.monotonic()
    url = f"http://{network['IPAddress']}:{port}{web_deploy['healthcheckPath']}"
    status = None
    while time.monotonic() - started < web_deploy["healthcheckTimeout"]:
        try:
            status = requests.get(
                url, headers={"Host": RAILWAY_HEALTHCHECK_HOST}, timeout=5
            ).status_code
        except requests.RequestException:
            status = None
        if status == 200:
            break
        time.sleep(1)
    assert status == 200, docker("logs", web, check=False).stderr
    figures["web_live_s"] = round(time.monotonic() - started, 1)

    # 3. Railway's private network is IPv6: another service reaches web over it,
    #    and the IPv6 loopback answers inside the container.
    ipv6 = network["GlobalIPv6Address"]
    assert ipv6, network
    fetch = (
        "import sys, urllib.request; "
        "print(urllib.request.urlopen(sys.argv[1], timeout=5).status)"
    )
    peer = docker(
        "run", "--rm", "--network", docker_network, "--entrypoint", "python",
        docker_image, "-c", fetch, f"http://[{ipv6}]:{port}/health/",
    )  # fmt: skip
    assert peer.stdout.strip() == "200"
    loopback = docker(
        "exec", web, "python", "-c", fetch, f"http://[::1]:{port}/health/"
    )
    assert loopback.stdout.strip() == "200"

    # 4. worker and beat from their own config files: no health check, no pre-deploy.
    others = {}
    for role in ("worker", "beat"):
        deploy = config(f"deploy/railway/{role}.json")
        assert "preDeployCommand" not in deploy
        assert "healthcheckPath" not in deploy
        others[role] = start_service(
            docker_image, docker_network, {**shared, "APP_ROLE": role}, deploy,
            f"rw-{role}-{suffix}",
        )  # fmt: skip
    for role, container in others.items():
        deadline = time.monotonic() + 120
        while True:
            probe = docker("exec", container, "python", "-m", "runtime.healthcheck",
                           check=False)  # fmt: skip
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, docker("logs", container, check=False)
            time.sleep(2)
        assert probe.stdout.startswith(f"healthy ({role})"), probe.stdout

    # 5. Draining: SIGTERM, then drainingSeconds before SIGKILL.
    for role, container in {"web": web, **others}.items():
        path = "railway.json" if role == "web" else f"deploy/railway/{role}.json"
        draining = config(path)["drainingSeconds"]
        stopped = time.monotonic()
        docker("stop", "-t", str(draining), container, timeout=draining + 60)
        took = time.monotonic() - stopped
        figures[f"{role}_stop_s"] = round(took, 1)
        state = json.loads(docker("inspect", container).stdout)[0]["State"]
        assert state["ExitCode"] != 137, (role, state)
        assert took < draining, (role, took)
    print("railway figures:", json.dumps(figures))
