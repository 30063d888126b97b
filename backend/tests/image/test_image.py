"""The built image, run with buildah against the PostgreSQL and Redis on 127.0.0.1.

Run by `make image-test` (after `make image`), not by `make test`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.containers import BUILDAH_ENV, IMAGE, buildah
from tests.support.env import PRODUCTION_ENV
from tests.support.http import wait_http
from tests.support.net import free_port
from tests.support.processes import (
    ServerProcess,
    assert_exit,
    local_url,
    start_process,
)

BASE_IMAGE = "docker.io/library/python:3.12-slim"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image_config() -> dict:
    result = buildah("inspect", "--type", "image", IMAGE)
    assert result.returncode == 0, (
        f"build the image first (make image): {result.stderr}"
    )
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def container() -> Iterator[str]:
    # One working container for the module: with the vfs driver every `buildah from`
    # copies the whole root filesystem.
    result = buildah("from", "--pull-never", IMAGE)
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip().splitlines()[-1]
    yield name
    buildah("rm", name)


def kill_marked(marker: str) -> None:
    """Kill every process started with RUN_MARKER=<marker> (inside the container)."""
    needle = f"RUN_MARKER={marker}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


@pytest.fixture
def app_env(production_env) -> dict[str, str]:
    keep = {
        k: production_env[k] for k in ("DATABASE_URL", "REDIS_URL", *PRODUCTION_ENV)
    }
    return {**keep, "TINI_SUBREAPER": "1"}


@pytest.fixture
def run_in(container: str, app_env: dict[str, str]):
    """Start `tini -- entrypoint.sh` (the image's ENTRYPOINT) inside the container."""
    markers: list[str] = []

    def run(*args: str, **env: str) -> ServerProcess:
        marker = uuid.uuid4().hex
        markers.append(marker)
        flags = []
        for key, value in {**app_env, **env, "RUN_MARKER": marker}.items():
            flags += ["--env", f"{key}={value}"]
        argv = [
            "buildah",
            "run",
            "--network",
            "host",
            *flags,
            container,
            "--",
            "tini",
            "--",
            "/app/scripts/entrypoint.sh",
            *args,
        ]
        process = start_process(argv, env=BUILDAH_ENV, base_url=local_url(env))
        process.marker = marker  # type: ignore[attr-defined]  # for kill_marked
        return process

    yield run
    for marker in markers:
        kill_marked(marker)


def exec_in(container: str, *command: str, **env: str) -> subprocess.CompletedProcess:
    flags = []
    for key, value in env.items():
        flags += ["--env", f"{key}={value}"]
    return buildah("run", "--network", "host", *flags, container, "--", *command)


def declared_healthcheck(
    image_config: dict, container: str, env: dict[str, str]
) -> subprocess.CompletedProcess:
    """Run the image's HEALTHCHECK as the engine does: the command the image config
    declares, in the container, with the environment the container started with."""
    kind, *command = image_config["Docker"]["config"]["Healthcheck"]["Test"]
    if kind == "CMD-SHELL":
        command = ["/bin/sh", "-c", *command]
    assert kind in {"CMD", "CMD-SHELL"}, kind
    return exec_in(container, *command, **env)


def heartbeat_dir(container: str) -> str:
    """A fresh HEARTBEAT_DIR, as a new container's /tmp is (the working container is
    shared by the module's tests)."""
    directory = f"/tmp/hc-{uuid.uuid4().hex[:8]}"
    assert exec_in(container, "mkdir", directory).returncode == 0
    return directory


def age_file(container: str, path: str, seconds: float) -> None:
    exec_in(
        container,
        "python",
        "-c",
        f"import os, time; t = time.time() - {seconds}; os.utime({path!r}, (t, t))",
    )


def test_image_user_and_contents(image_config: dict, container: str) -> None:
    config = image_config["Docker"]["config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["tini", "--", "/app/scripts/entrypoint.sh"]
    assert config["Healthcheck"]["Test"] == [
        "CMD",
        "python",
        "-m",
        "runtime.healthcheck",
    ]
    assert config["StopSignal"] == "SIGTERM"
    assert "5000/tcp" in config["ExposedPorts"]
    assert exec_in(container, "id", "-u").stdout.strip() == "1000"
    probe = exec_in(
        container,
        "sh",
        "-c",
        "for tool in gcc cc g++ make curl wget git; do command -v $tool; done; "
        "ls /app/tests /app/.env /app/.git 2>/dev/null; true",
    )
    assert probe.stdout.strip() == ""
    static = exec_in(container, "ls", "/app/staticfiles/staticfiles.json")
    assert static.returncode == 0
    # The code is read-only for the app user.
    assert exec_in(container, "touch", "/app/x").returncode != 0


UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def _bytes(size: str) -> float:
    number, unit = size.split()
    return float(number) * UNITS[unit]


# Issue 13: what the image adds to its base (the venv, the code, static files, tini).
MAX_MB_OVER_BASE = 130


def test_image_size_over_base(image_config: dict, capsys) -> None:
    sizes = {}
    for entry in json.loads(buildah("images", "--json").stdout):
        for name in entry.get("names") or []:
            sizes[name] = _bytes(entry["size"])
    image_size = next(v for k, v in sizes.items() if k.endswith(IMAGE))
    base_size = sizes[BASE_IMAGE]
    over_mb = (image_size - base_size) / 1e6
    with capsys.disabled():  # `make image-test` prints the figure
        print(
            f"\nimage {IMAGE}: {image_size / 1e6:.0f} MB, base "
            f"{base_size / 1e6:.0f} MB, over base {over_mb:.0f} MB "
            f"(limit {MAX_MB_OVER_BASE} MB)"
        )
    assert over_mb <= MAX_MB_OVER_BASE


def test_runtime_has_no_installer_tests_or_bench(container: str) -> None:
    # The venv's own interpreter: what the roles run (PATH starts with /opt/venv/bin).
    found = exec_in(
        container,
        "/opt/venv/bin/python",
        "-c",
        "import importlib.util as u;"
        "print([m for m in ('pip', 'setuptools', 'wheel') if u.find_spec(m)])",
    )
    assert found.stdout.strip() == "[]", found.stderr
    listing = exec_in(container, "sh", "-c", "ls -d /app/tests /app/bench /bench; true")
    assert listing.stdout.strip() == ""


def test_bytecode_is_compiled_at_build(container: str) -> None:
    # With a read-only root and PYTHONDONTWRITEBYTECODE, a module without its .pyc
    # is compiled again by every process that imports it.
    check = exec_in(
        container,
        "/opt/venv/bin/python",
        "-c",
        "import pathlib, importlib.util as u\n"
        "roots = ['/app', '/opt/venv/lib']\n"
        "sources = [p for r in roots for p in pathlib.Path(r).rglob('*.py')]\n"
        "missing = [str(p) for p in sources\n"
        "           if not pathlib.Path(u.cache_from_source(str(p))).exists()]\n"
        "print(len(sources) > 1000, missing[:20])",
    )
    assert check.stdout.strip() == "True []", check.stdout + check.stderr


def test_missing_secret_key_exits_1_with_the_registry_message(run_in) -> None:
    process = run_in("web", DJANGO_SECRET_KEY="", PORT=str(free_port()))
    assert_exit(
        process,
        1,
        timeout=120,
        says=[
            "Invalid configuration: 1 problem with environment variables:",
            "  - DJANGO_SECRET_KEY is missing",
        ],
        never=["Traceback"],
    )


def test_migrate_role_exits_0(run_in) -> None:
    process = run_in("migrate")
    assert process.process.wait(timeout=180) == 0, process.lines
    assert any("migrations applied; exiting" in line for line in process.lines)


def test_web_role_serves_probes_and_static_files(
    run_in, container: str, image_config: dict, app_env: dict[str, str]
) -> None:
    port = free_port()
    role_env = {"APP_ROLE": "web", "PORT": str(port), "GUNICORN_WORKERS": "2"}
    process = run_in(**role_env)
    wait_http(f"{process.base_url}/health/", 120, process, interval=0.5)
    live = requests.get(f"{process.base_url}/health/", timeout=2)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = requests.get(f"http://127.0.0.1:{port}/health/ready/", timeout=5)
    assert (ready.status_code, ready.json()["status"]) == (200, "ok"), ready.text

    manifest = exec_in(
        container,
        "python",
        "-c",
        "import json; print(json.load(open('/app/staticfiles/staticfiles.json'))"
        "['paths']['admin/css/base.css'])",
    ).stdout.strip()
    assert manifest.startswith("admin/css/base.")
    assert manifest != "admin/css/base.css"
    static = requests.get(
        f"http://127.0.0.1:{port}/static/{manifest}",
        headers={
            "Accept-Encoding": "gzip",
            "X-Forwarded-Proto": "https",
            "Host": "localhost",
        },
        timeout=5,
    )
    assert static.status_code == 200
    assert static.headers["Content-Encoding"] == "gzip"
    assert "max-age=315360000" in static.headers["Cache-Control"]
    assert "immutable" in static.headers["Cache-Control"]

    health = declared_healthcheck(image_config, container, {**app_env, **role_env})
    assert health.returncode == 0, health.stdout
    assert health.stdout.startswith(f"healthy (web): GET http://127.0.0.1:{port}/")


def assert_declared_healthcheck_live_then_stale(
    image_config: dict, container: str, env: dict[str, str], process
) -> str:
    """The declared HEALTHCHECK passes for the role `env` names while `process` runs,
    and fails once the role's heartbeat is older than the stale window (60 s) after
    the process was killed; return the healthy line."""
    role = env["APP_ROLE"]
    heartbeat = f"{env['HEARTBEAT_DIR']}/celery-{role}.heartbeat"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = declared_healthcheck(image_config, container, env)
        if health.stdout.startswith(f"healthy ({role}): "):
            break
        time.sleep(1)
    assert health.returncode == 0, health.stdout + "\n".join(process.lines)
    assert health.stdout.startswith(f"healthy ({role}): heartbeat {heartbeat}")

    kill_marked(process.marker)
    age_file(container, heartbeat, 75)
    stale = declared_healthcheck(image_config, container, env)
    assert stale.returncode == 1, stale.stdout
    assert stale.stdout.startswith(f"unhealthy ({role}): heartbeat {heartbeat} is ")
    assert "s old (limit 60s)" in stale.stdout
    return health.stdout


def test_worker_role_runs_a_task_enqueued_from_the_host(
    run_in, container: str, image_config: dict, app_env: dict[str, str]
) -> None:
    """The worker runs a task; the image's HEALTHCHECK, run as declared with the
    container's environment (APP_ROLE=worker, as Compose, ECS and Railway set it),
    passes while it consumes and fails once its heartbeat is stale."""
    from config.celery import app

    queue = f"image-{uuid.uuid4().hex[:8]}"
    role_env = {
        "APP_ROLE": "worker",
        "CELERY_WORKER_QUEUES": queue,
        "HEARTBEAT_DIR": heartbeat_dir(container),
    }
    worker = run_in(**role_env)
    worker.wait_for_line(lambda line: "ready." in line, timeout=120)
    task_id = app.send_task("inventory.expire_reservations", queue=queue).id
    worker.wait_for_line(
        lambda line: task_id in line and "succeeded" in line, timeout=60
    )
    healthy = assert_declared_healthcheck_live_then_stale(
        image_config, container, {**app_env, **role_env}, worker
    )
    assert "canary from canary." in healthy


def test_beat_role_ticks(
    run_in, container: str, image_config: dict, app_env: dict[str, str]
) -> None:
    """Beat ticks; the image's HEALTHCHECK, run as declared with APP_ROLE=beat in
    the container's environment, passes after a tick and fails once it is stale."""
    role_env = {"APP_ROLE": "beat", "HEARTBEAT_DIR": heartbeat_dir(container)}
    beat = run_in(**role_env)
    beat.wait_for_line(
        lambda line: "beat: Starting" in line or "Scheduler" in line, 120
    )
    assert_declared_healthcheck_live_then_stale(
        image_config, container, {**app_env, **role_env}, beat
    )


def test_build_context_holds_only_what_the_image_needs(tmp_path: Path) -> None:
    """The repository's .dockerignore, applied by the builder itself to a copy of
    the tree with files an operator might leave in it."""
    from tests.support.processes import ROOT

    context = tmp_path / "context"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            target.write_bytes((ROOT / name).read_bytes())
    planted = [
        "backend/.env.local",
        "backend/config/.env.production",
        "backend/apps/core/dump.sqlite3",
        "backend/apps/tls.key",
        "backend/notes.txt",
        "secrets.txt",
    ]
    for name in planted:
        (context / name).write_text("do not ship\n")
    probe = tmp_path / "Containerfile"
    probe.write_text(
        f"FROM {BASE_IMAGE}\nCOPY . /context/\nRUN find /context -type f | sort\n"
    )
    result = buildah(
        "bud", "--layers=false", "--network", "host", "-f", str(probe), str(context)
    )
    assert result.returncode == 0, result.stderr
    shipped = {
        line.removeprefix("/context/")
        for line in result.stdout.splitlines()
        if line.startswith("/context/")
    }
    assert shipped, result.stdout
    assert not set(planted) & shipped
    allowed = (
        "backend/apps/",
        "backend/config/",
        "backend/runtime/",
        "backend/scripts/",
    )
    extra = {
        name
        for name in shipped
        if not name.startswith(allowed)
        and name not in {"backend/manage.py", "backend/requirements/base.txt"}
    }
    assert extra == set()
    assert {"backend/manage.py", "backend/scripts/entrypoint.sh"} <= shipped
