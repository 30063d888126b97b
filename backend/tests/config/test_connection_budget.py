"""The PostgreSQL connection budget: start-up report, warning and deploy check.

Against the real test server: its `max_connections` is what the budget reads.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import override_settings

from apps.core import checks
from apps.core.db.budget import connection_budget_compute
from runtime.env import load
from tests.support.env import PRODUCTION_ENV
from tests.support.processes import run_python

pytestmark = pytest.mark.django_db


def server_max_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        return int(cursor.fetchone()[0])


def env(**overrides: str):
    return load(
        {**PRODUCTION_ENV, "DATABASE_URL": "postgres://u@h:5432/d", **overrides}
    )


def test_web_budget_counts_threads_and_readiness_per_worker() -> None:
    budget = connection_budget_compute(
        role="web",
        env=env(
            GUNICORN_WORKERS="3",
            GUNICORN_THREADS="4",
            DB_EXPECTED_REPLICAS="5",
            DB_RESERVED_CONNECTIONS="7",
        ),
    )
    assert budget is not None
    assert budget.per_container == 18  # 3 x (4 + 2)
    assert budget.needed == 90
    assert budget.server_max == server_max_connections()
    assert budget.available == server_max_connections() - 7
    assert budget.exceeded is (server_max_connections() - 7 < 90)


def test_worker_budget_is_concurrency_plus_its_main_process() -> None:
    budget = connection_budget_compute(
        role="worker",
        env=env(CELERY_WORKER_CONCURRENCY="6", DB_EXPECTED_REPLICAS="2"),
    )
    assert budget is not None
    assert (budget.per_container, budget.needed) == (7, 14)


def test_roles_without_a_steady_pool_have_no_budget() -> None:
    assert connection_budget_compute(role="beat", env=env()) is None
    assert connection_budget_compute(role="migrate", env=env()) is None
    assert (
        connection_budget_compute(role="web", env=env(GUNICORN_WORKER_CLASS="uvicorn"))
        is None
    )


def over_budget_env(maximum: int):
    # A web container needs 2 x (64 + 2) = 132, a worker 64 + 1 = 65; this many
    # replicas of either exceed the server's limit.
    replicas = maximum // 65 + 1
    return env(
        GUNICORN_WORKERS="2",
        GUNICORN_THREADS="64",
        CELERY_WORKER_CONCURRENCY="64",
        DB_EXPECTED_REPLICAS=str(replicas),
        DB_RESERVED_CONNECTIONS="0",
    )


def test_deploy_check_warns_when_over_budget() -> None:
    maximum = server_max_connections()
    with override_settings(ENV=over_budget_env(maximum)):
        found = checks.check_connection_budget(None, databases=["default"])
    assert [w.id for w in found] == ["core.W006", "core.W006"]  # web and worker
    assert "GUNICORN_WORKERS 2 x (GUNICORN_THREADS 64 + 2 readiness)" in found[0].msg
    assert f"max_connections ({maximum})" in found[0].msg
    assert "DB_EXPECTED_REPLICAS" in found[0].msg


def test_deploy_check_is_silent_within_budget_and_without_database() -> None:
    within = env(
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="1",
        CELERY_WORKER_CONCURRENCY="1",
        DB_EXPECTED_REPLICAS="1",
        DB_RESERVED_CONNECTIONS="0",
    )
    with override_settings(ENV=within):
        assert checks.check_connection_budget(None, databases=["default"]) == []
    with override_settings(ENV=over_budget_env(server_max_connections())):
        # `check --deploy` without --database: database checks do not connect.
        assert checks.check_connection_budget(None, databases=None) == []


@pytest.mark.parametrize(
    ("role", "formula"),
    [
        ("web", "GUNICORN_WORKERS 40 x (GUNICORN_THREADS 64 + 2 readiness)"),
        ("worker", "CELERY_WORKER_CONCURRENCY 64 + 1 main process"),
    ],
)
def test_start_warns_naming_the_variables(
    production_env: dict[str, str], tmp_path, role: str, formula: str
) -> None:
    """The entrypoint's prestart, as a real process against the test database."""
    result = run_python(
        ["manage.py", "prestart", role],
        env={
            **production_env,
            "GUNICORN_WORKERS": "40",
            "GUNICORN_THREADS": "64",
            "CELERY_WORKER_CONCURRENCY": "64",
            "DB_EXPECTED_REPLICAS": "100",
            "HEARTBEAT_DIR": str(tmp_path),
            "MIGRATION_WAIT_TIMEOUT": "5",
        },
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if "{" in line]
    (warning,) = [r for r in records if "connection budget exceeded" in r["message"]]
    assert warning["level"] == "WARNING"
    assert formula in warning["message"]
    assert "DB_EXPECTED_REPLICAS (100)" in warning["message"]
    assert f"max_connections ({server_max_connections()})" in warning["message"]
    assert "GUNICORN_WORKERS/GUNICORN_THREADS" in warning["message"]


def test_start_reports_a_budget_within_limits(
    production_env: dict[str, str], tmp_path
) -> None:
    result = run_python(
        ["manage.py", "prestart", "web"],
        env={
            **production_env,
            "GUNICORN_WORKERS": "1",
            "GUNICORN_THREADS": "2",
            "DB_EXPECTED_REPLICAS": "1",
            "DB_RESERVED_CONNECTIONS": "0",
            "HEARTBEAT_DIR": str(tmp_path),
        },
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "within budget" in result.stdout
    assert "exceeded" not in result.stdout


def test_through_a_pooler_replicas_are_bounded_by_the_pool() -> None:
    maximum = server_max_connections()
    direct = over_budget_env(maximum)
    replicas = direct["DB_EXPECTED_REPLICAS"]
    pooled = {
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "64",
        "DB_EXPECTED_REPLICAS": str(replicas),
        "DB_RESERVED_CONNECTIONS": "0",
        "DB_POOL_MODE": "transaction",
        "DB_POOL_SIZE": "20",
    }
    # The same replicas that exceed max_connections directly fit through a pool
    # of 20 server connections, while the pooler accepts their client connections.
    assert connection_budget_compute(role="web", env=direct).exceeded is True
    fits = connection_budget_compute(
        role="web", env=env(**pooled, DB_POOL_MAX_CLIENTS=str(132 * replicas))
    )
    assert fits is not None
    assert (fits.needed, fits.exceeded) == (132 * replicas, False)
    assert "DB_POOL_SIZE (20) PostgreSQL connections" in fits.describe()

    too_many_clients = env(**pooled, DB_POOL_MAX_CLIENTS=str(132 * replicas - 1))
    pool_too_big = env(
        **{**pooled, "DB_POOL_SIZE": str(maximum + 1)},
        DB_POOL_MAX_CLIENTS=str(132 * replicas),
    )
    for over in (too_many_clients, pool_too_big):
        assert connection_budget_compute(role="web", env=over).exceeded is True
    with override_settings(ENV=too_many_clients):
        found = checks.check_connection_budget(None, databases=["default"])
    assert found[0].id == "core.W006"
    assert f"of DB_POOL_MAX_CLIENTS ({132 * replicas - 1})" in found[0].msg
    assert "DB_POOL_MAX_CLIENTS" in found[0].hint
