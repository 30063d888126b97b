"""`make test`'s launcher: private PostgreSQL and Redis for one run.

The launcher is tests/support/servers.py. Each test runs it for real around a
one-test pytest session that reports the URLs it was given (and uses them), then
checks the servers are gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.env import clean_environ
from tests.support.net import free_port
from tests.support.processes import PYTHON, popen, run_python
from tests.support.servers import DIR_PREFIX, PID_FILE

pytestmark = pytest.mark.slow

PROBE = """
import json, os, time

def test_probe():
    report = {k: os.environ.get(k) for k in ("DATABASE_URL", "REDIS_URL")}
    if os.environ["PROBE_CONNECT"] == "1":
        import psycopg2, redis
        with psycopg2.connect(report["DATABASE_URL"]) as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_database(), current_user")
                report["database"] = list(cursor.fetchone())
        client = redis.Redis.from_url(report["REDIS_URL"])
        client.set("probe", "1")
        report["redis"] = client.get("probe").decode()
    with open(os.environ["PROBE_REPORT"], "w") as out:
        json.dump(report, out)
    time.sleep(float(os.environ["PROBE_SLEEP"]))
"""
STARTED = re.compile(
    r"^make test: private PostgreSQL at postgres://postgres@127\.0\.0\.1:(\d+)/backend"
    r", Redis at redis://127\.0\.0\.1:(\d+)/0 \(started in \d+\.\ds\)$",
    re.MULTILINE,
)
STOPPED = re.compile(
    r"^make test: private servers stopped and removed \(in \d+\.\ds\)$", re.MULTILINE
)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _launch(
    tmp_path: Path,
    *,
    sleep: float = 0,
    connect: bool = True,
    background: bool = False,
    **env: str,
) -> tuple[subprocess.Popen[str], Path]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "report.json"
    environ = clean_environ(
        PROBE_REPORT=str(report),
        PROBE_SLEEP=str(sleep),
        PROBE_CONNECT="1" if connect else "0",
        # The probe needs no plugin (and loading them all is slow).
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        **env,
    )
    # Its own process group (popen): a Ctrl-C can be sent to it alone.
    process = popen(
        [
            PYTHON,
            "-m",
            "tests.support.servers",
            "-c",
            str(tmp_path / "pytest.ini"),
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_probe.py"),
        ],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # What `make test &` gets from a shell: SIGINT ignored.
        preexec_fn=_ignore_sigint if background else None,
    )
    return process, report


def _wait_for(path: Path, process: subprocess.Popen[str]) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return json.loads(path.read_text())
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    raise AssertionError("the probe test did not run")


def _directory_of(pid: int) -> Path:
    for path in Path(tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        pid_file = path / PID_FILE
        if pid_file.exists() and pid_file.read_text() == str(pid):
            return path
    raise AssertionError(f"no directory of launcher {pid}")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_private_servers_serve_the_run_and_are_removed_after_it(tmp_path) -> None:
    process, report_file = _launch(tmp_path)
    report = _wait_for(report_file, process)
    directory = _directory_of(process.pid)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stdout + stderr
    postgres_port, redis_port = (int(p) for p in STARTED.search(stderr).groups())
    assert report == {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{postgres_port}/backend",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "database": ["backend", "postgres"],
        "redis": "1",
    }
    assert STOPPED.search(stderr), stderr
    assert "1 passed" in stdout
    assert not _listening(postgres_port)
    assert not _listening(redis_port)
    assert not directory.exists()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGTERM to a background job", "Ctrl-C"])
def test_an_interrupted_run_tears_down_and_removes_the_servers(
    tmp_path, how: str
) -> None:
    process, report_file = _launch(
        tmp_path, sleep=600, background=how == "SIGTERM to a background job"
    )
    report = _wait_for(report_file, process)
    directory = _directory_of(process.pid)
    if how.startswith("SIGTERM"):
        process.send_signal(signal.SIGTERM)
    else:
        # A terminal's Ctrl-C goes to the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    # pytest's "interrupted" exit status, after its teardowns ran.
    assert process.returncode == 2, stdout + stderr
    assert "KeyboardInterrupt" in stdout
    assert STOPPED.search(stderr), stderr
    for url in (report["DATABASE_URL"], report["REDIS_URL"]):
        port = int(re.search(r":(\d+)/", url).group(1))
        assert not _listening(port), url
    assert not directory.exists()


def test_a_killed_launchers_servers_stop_and_the_next_run_removes_its_directory(
    tmp_path,
) -> None:
    process, report_file = _launch(tmp_path / "killed", sleep=600)
    report = _wait_for(report_file, process)
    directory = _directory_of(process.pid)
    process.kill()  # SIGKILL: no clean-up code runs
    process.communicate(timeout=60)
    ports = [
        int(re.search(r":(\d+)/", url).group(1))
        for url in (report["DATABASE_URL"], report["REDIS_URL"])
    ]
    deadline = time.monotonic() + 30
    while any(_listening(port) for port in ports):
        assert time.monotonic() < deadline, "servers outlived their launcher"
        time.sleep(0.2)
    assert directory.exists()
    process, _ = _launch(tmp_path / "next", connect=False)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stdout + stderr
    assert not directory.exists()


def test_servers_the_caller_names_are_used_as_they_are(tmp_path) -> None:
    database_url = f"postgres://postgres@127.0.0.1:{free_port()}/elsewhere"
    redis_url = f"redis://127.0.0.1:{free_port()}/7"
    process, report_file = _launch(
        tmp_path, connect=False, DATABASE_URL=database_url, REDIS_URL=redis_url
    )
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stdout + stderr
    assert json.loads(report_file.read_text()) == {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
    }
    assert "private" not in stderr


MISSING_SCRIPT = """
import sys
import tests.support.servers as servers
# A machine without Debian's postgresql and redis-server packages.
servers.PG_DEBIAN_GLOB = "/nonexistent/*/bin"
servers.REDIS_SEARCH_PATH = "/nonexistent"
sys.exit(servers.main(["--version"]))
"""


@pytest.mark.parametrize(
    ("given", "line"),
    [
        (
            {},
            "make test: PostgreSQL server binaries (initdb, postgres) and "
            "redis-server not found: apt-get install postgresql redis-server "
            "(Debian), or set DATABASE_URL and REDIS_URL to use running servers "
            "instead.",
        ),
        (
            {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/backend"},
            "make test: redis-server not found: apt-get install redis-server "
            "(Debian), or set REDIS_URL to use a running server instead.",
        ),
    ],
)
def test_missing_binaries_are_named_in_one_line(
    given: dict[str, str], line: str
) -> None:
    env = clean_environ(PATH="/nonexistent", **given)
    result = run_python(["-c", MISSING_SCRIPT], env=env)
    assert (result.returncode, result.stdout, result.stderr) == (3, "", line + "\n")
