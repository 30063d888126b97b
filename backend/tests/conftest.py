"""Fixtures only: each wires helpers of tests/support/.

Helpers are imported from there, never from a conftest or a test module.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.support import factories, processes
from tests.support.env import production_environ, with_venv_path
from tests.support.http import wait_http
from tests.support.net import free_port
from tests.support.postgres import database_name, database_sessions_end
from tests.support.processes import WORKER_COMMAND, ServerProcess
from tests.support.redis import redis_client as redis_client_for


@pytest.fixture(scope="session", autouse=True)
def _pooler_lets_go_of_the_test_database(request) -> Iterator[None]:
    """In the PgBouncer lane, end the pooler's server sessions before the DROP."""
    from django.conf import settings

    if not settings.DB_POOLED:
        yield
        return
    request.getfixturevalue("django_db_setup")
    yield
    # pytest-django drops the test database after this: PgBouncer keeps idle server
    # connections to it, and DROP DATABASE refuses a database in use.
    database_sessions_end(name=database_name())


@pytest.fixture
def production_env(transactional_db: None) -> dict[str, str]:
    """A valid production environment pointing at the test database and Redis."""
    return production_environ()


@pytest.fixture
def start_gunicorn(
    production_env: dict[str, str],
) -> Iterator[Callable[..., ServerProcess]]:
    """Start gunicorn with the shipped config; stop it after the test."""
    started: list[ServerProcess] = []

    def start(app: str | None = None, **overrides: str) -> ServerProcess:
        # No drain by default: each stop would wait WEB_DRAIN_SECONDS. The drain
        # has its own tests (tests/processes/test_drain.py), which set it.
        env = {
            **production_env,
            "PORT": str(free_port()),
            "GUNICORN_WORKERS": "2",
            "WEB_DRAIN_SECONDS": "0",
            **overrides,
        }
        server = processes.start_gunicorn(env, app)
        started.append(server)
        wait_http(server.base_url + "/health/", server=server)
        return server

    yield start
    for server in started:
        processes.stop_group(server.process)


@pytest.fixture
def start_entrypoint(
    production_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., ServerProcess]]:
    """Start scripts/entrypoint.sh for real; kill whatever is left after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, **overrides: str) -> ServerProcess:
        env = with_venv_path({**production_env, "HEARTBEAT_DIR": str(tmp_path)})
        server = processes.start_entrypoint(args, {**env, **overrides})
        started.append(server)
        return server

    yield start
    for server in started:
        processes.kill_group(server.process)


@pytest.fixture
def queue() -> str:
    # A queue per test: leftovers of other runs never reach this test's worker.
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_worker(start_entrypoint, queue: str) -> Callable[..., ServerProcess]:
    """Start a worker on the test's queue with the test tasks; wait until ready."""

    def start(*extra_args: str, **overrides: str) -> ServerProcess:
        env = {
            "CELERY_WORKER_QUEUES": queue,
            "CELERY_WORKER_CONCURRENCY": "1",
            **overrides,
        }
        worker = start_entrypoint("worker", *WORKER_COMMAND, *extra_args, **env)
        worker.wait_for_line(lambda line: "ready." in line, timeout=60)
        return worker

    return start


@pytest.fixture
def redis_client():
    client = redis_client_for(os.environ["REDIS_URL"])
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
    return factories.user_create


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def staff(make_user):
    return make_user(staff=True)


@pytest.fixture
def client_for() -> Callable[[object], APIClient]:
    return factories.token_client


@pytest.fixture
def make_product(staff) -> Callable[..., object]:
    def make(*, on_hand: int = 100, sku: str | None = None):
        return factories.product_create(actor=staff, on_hand=on_hand, sku=sku)

    return make


@pytest.fixture
def admin_client(django_user_model, settings) -> Client:
    # pytest-django's admin_client, but admin pages link static files and the
    # tests run without collectstatic's manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }
    admin = django_user_model.objects.create_superuser(
        username="root-admin", password="unused-" + "x" * 20
    )
    client = Client()
    client.force_login(admin)
    return client
