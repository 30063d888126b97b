"""Shared fixtures: production-like environments and real server processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

BACKEND_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN_DIR = Path(PYTHON).parent

# A complete, valid production environment (what an operator deploys).
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "prod-" + "s3cr3t" * 10,
    "ALLOWED_HOSTS": "api.example.com,localhost,127.0.0.1",
    "CORS_ALLOWED_ORIGINS": "https://app.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://app.example.com",
}


def free_port() -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environ(**overrides: str) -> dict[str, str]:
    """Return os.environ without any registry variable, plus overrides."""
    from config.env import REGISTRY

    env = {k: v for k, v in os.environ.items() if k not in REGISTRY}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(overrides)
    return env


def run_python(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python <args>` in backend/ and capture its output."""
    return subprocess.run(
        [PYTHON, *args],
        cwd=BACKEND_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def production_env(transactional_db: None) -> dict[str, str]:
    """A valid production environment pointing at the test database and Redis."""
    from django.db import connections

    # pytest-django renamed the database to the test one in the connection settings.
    db = connections["default"].settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return clean_environ(
        **PRODUCTION_ENV,
        DATABASE_URL=database_url,
        REDIS_URL=os.environ["REDIS_URL"],
        # Tests that want the worker's metrics port pick a free one.
        WORKER_METRICS_PORT="0",
    )


@dataclass
class ServerProcess:
    """A real server process and everything it wrote."""

    process: subprocess.Popen[str]
    base_url: str
    lines: list[str] = field(default_factory=list)

    def json_lines(self) -> list[dict]:
        records = []
        for line in list(self.lines):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def wait_for_line(
        self, predicate: Callable[[str], bool], timeout: float = 10
    ) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            time.sleep(0.05)
        raise AssertionError("no matching output line; got:\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_process(
    argv: list[str], env: dict[str, str], base_url: str = ""
) -> ServerProcess:
    """Start a process in backend/, collecting its output line by line."""
    process = subprocess.Popen(
        argv,
        cwd=BACKEND_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = ServerProcess(process=process, base_url=base_url)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.append(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return server


def wait_http(
    url: str, timeout: float = 30, server: ServerProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.process.poll() is not None:
            raise AssertionError("server exited:\n" + "\n".join(server.lines))
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.fixture
def start_gunicorn(
    production_env: dict[str, str],
) -> Iterator[Callable[..., ServerProcess]]:
    """Start gunicorn with the shipped config; stop it after the test."""
    started: list[ServerProcess] = []

    def start(app: str | None = None, **overrides: str) -> ServerProcess:
        port = free_port()
        # No drain by default: each stop would wait WEB_DRAIN_SECONDS. The drain
        # has its own tests (tests/processes/test_drain.py), which set it.
        env = {
            **production_env,
            "PORT": str(port),
            "GUNICORN_WORKERS": "2",
            "WEB_DRAIN_SECONDS": "0",
        }
        env.update(overrides)
        server = start_process(
            # No app argument: gunicorn_conf's wsgi_app picks WSGI or ASGI, as in
            # the entrypoint.
            [str(BIN_DIR / "gunicorn"), "-c", "config/gunicorn_conf.py"]
            + ([app] if app else []),
            env=env,
            base_url=f"http://127.0.0.1:{port}",
        )
        started.append(server)
        wait_http(server.base_url + "/health/", server=server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)


ENTRYPOINT = BACKEND_DIR / "scripts" / "entrypoint.sh"


def with_venv_path(env: dict[str, str]) -> dict[str, str]:
    """Put the virtual environment's bin first, as the image's PATH does."""
    return {**env, "PATH": f"{BIN_DIR}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


@pytest.fixture
def start_entrypoint(
    production_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., ServerProcess]]:
    """Start scripts/entrypoint.sh for real; kill whatever is left after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, **overrides: str) -> ServerProcess:
        env = with_venv_path({**production_env, "HEARTBEAT_DIR": str(tmp_path)})
        env.update(overrides)
        port = env.get("PORT", "")
        server = start_process(
            [str(ENTRYPOINT), *args],
            env=env,
            base_url=f"http://127.0.0.1:{port}" if port else "",
        )
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
        else:
            # Pool children of a killed worker may outlive it: kill the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


# --- Inventory fixtures (used by inventory, docs and fault tests) ---


@pytest.fixture(autouse=True)
def _closed_breaker():
    from apps.inventory import gate

    # A test that cut Redis must not leave the next one on the database path.
    gate.breaker.reset()
    yield
    gate.breaker.reset()


@pytest.fixture
def make_user(django_user_model) -> Callable[..., object]:
    def make(*, staff: bool = False):
        name = f"user-{uuid.uuid4().hex[:8]}"
        return django_user_model.objects.create_user(
            username=name, password=uuid.uuid4().hex, is_staff=staff
        )

    return make


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def staff(make_user):
    return make_user(staff=True)


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def client_for() -> Callable[[object], APIClient]:
    return token_client


@pytest.fixture
def make_product(staff) -> Callable[..., object]:
    from apps.inventory import services
    from apps.inventory.models import Product

    def make(*, on_hand: int = 100, sku: str | None = None) -> Product:
        sku = sku or f"SKU-{uuid.uuid4().hex[:10]}"
        services.product_create(sku=sku, name=f"Product {sku}", actor=staff)
        if on_hand:
            services.stock_restock(sku=sku, quantity=on_hand, actor=staff)
        return Product.objects.select_related("stock").get(sku=sku)

    return make


def start_redis(port: int, tmp_path) -> subprocess.Popen:
    """Start a private redis-server (fault tests cut it, never the shared one)."""
    from tests.servers import redis_server_argv

    process = subprocess.Popen(
        redis_server_argv(binary="redis-server", port=port, directory=tmp_path),
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _redis_ping(port):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return process


def _redis_ping(port: int) -> bool:
    import redis

    try:
        return redis.Redis(port=port, socket_timeout=0.5).ping()
    except redis.RedisError:
        return False
