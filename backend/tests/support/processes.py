"""Real processes, started in backend/ as production starts them, and their output."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKEND_DIR = Path(__file__).resolve().parents[2]
ROOT = BACKEND_DIR.parent
PYTHON = sys.executable
BIN_DIR = Path(PYTHON).parent
ENTRYPOINT = BACKEND_DIR / "scripts" / "entrypoint.sh"
GUNICORN = [str(BIN_DIR / "gunicorn"), "-c", "config/gunicorn_conf.py"]
# What follows the role to run a worker on the test tasks (`entrypoint.sh worker ...`);
# no gossip or mingle: each test's worker is alone on its queue.
WORKER_COMMAND = (
    "celery",
    "-A",
    "config",
    "worker",
    "--include",
    "tests.support.worker_tasks",
    "--without-gossip",
    "--without-mingle",
)


def run(
    argv: list[str],
    *,
    timeout: float = 60,
    check: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    shell: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output; with check, fail showing that output."""
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd=cwd,
        shell=shell,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{argv!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def run_python(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python <args>` in backend/ and capture its output."""
    return run([PYTHON, *args], env=env, cwd=BACKEND_DIR, timeout=timeout)


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the container HEALTHCHECK's command with `env`."""
    return run_python(["-m", "runtime.healthcheck"], env=env)


def popen(argv: list[str], *, env: dict[str, str], **options: Any) -> subprocess.Popen:
    """Start argv in backend/ in a session of its own (its group can be signalled)."""
    return subprocess.Popen(
        argv, cwd=BACKEND_DIR, env=env, text=True, start_new_session=True, **options
    )


@dataclass
class ServerProcess:
    """A real server process and everything it wrote."""

    process: subprocess.Popen[str]
    base_url: str
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "\n".join(self.lines)

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
        raise AssertionError("no matching output line; got:\n" + self.output())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_process(
    argv: list[str], env: dict[str, str], base_url: str = ""
) -> ServerProcess:
    """Start a process in backend/, collecting its output line by line."""
    process = popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server = ServerProcess(process=process, base_url=base_url)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.append(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return server


def local_url(env: dict[str, str]) -> str:
    """The base URL of a server started with `env` (its PORT), or ''."""
    port = env.get("PORT", "")
    return f"http://127.0.0.1:{port}" if port else ""


def start_gunicorn(env: dict[str, str], app: str | None = None) -> ServerProcess:
    """Start gunicorn with the shipped config on env's PORT."""
    # No app argument: gunicorn_conf's wsgi_app picks WSGI or ASGI, as in the
    # entrypoint.
    argv = GUNICORN + ([app] if app else [])
    return start_process(argv, env=env, base_url=local_url(env))


def start_entrypoint(args: Iterable[str], env: dict[str, str]) -> ServerProcess:
    """Start scripts/entrypoint.sh with these arguments (role first)."""
    return start_process([str(ENTRYPOINT), *args], env=env, base_url=local_url(env))


def assert_exit(
    process: ServerProcess,
    code: int,
    *,
    timeout: float,
    says: Iterable[str] = (),
    never: Iterable[str] = (),
) -> str:
    """Wait for the exit; check its code and what the output says; return the output."""
    returned = process.process.wait(timeout=timeout)
    output = process.output()
    assert returned == code, f"exited {returned}, not {code}; output:\n{output}"
    missing = [text for text in says if text not in output]
    assert not missing, f"the output lacks {missing}:\n{output}"
    present = [text for text in never if text in output]
    assert not present, f"the output has {present}:\n{output}"
    return output


def stop_group(process: subprocess.Popen, timeout: float = 40) -> None:
    """SIGTERM a running process's group; SIGKILL it when it outlives the timeout."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process's group, also what is left once its leader exited."""
    # Pool children of a killed worker may outlive it: kill the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
