"""Run pytest against private, throwaway PostgreSQL and Redis servers.

`make test` runs `python -m tests.support.servers <pytest arguments>`. For each of
DATABASE_URL and REDIS_URL the caller did not set, a server is started for this run
alone: a PostgreSQL cluster made with initdb in a temporary directory, and a
redis-server, each on a free port of 127.0.0.1. They are stopped and their directory
removed after the last test, also when the run is interrupted (Ctrl-C, SIGTERM,
SIGHUP), so two runs on one machine never share a database. A variable the caller set
means "use that server", as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.net import free_port

BACKEND_DIR = Path(__file__).resolve().parents[2]
DIR_PREFIX = "backend-test-servers-"
PID_FILE = "launcher.pid"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# pytest gets this long to tear down (stop gunicorn, celery) after an interrupt.
INTERRUPT_GRACE = 60.0
BIND_ATTEMPTS = 5
EXIT_MISSING = 3
# `TEST_DB_POOLER=pgbouncer`: put PgBouncer (transaction mode) in front of PostgreSQL.
POOLER_VARIABLE = "TEST_DB_POOLER"

# Where Debian's packages put the binaries (also when PATH does not name them).
PG_DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"
REDIS_SEARCH_PATH = "/usr/bin:/usr/sbin:/usr/local/bin"
PG_HINT = "PostgreSQL server binaries (initdb, postgres)"
PG_PACKAGE = "postgresql"
REDIS_HINT = "redis-server"
REDIS_PACKAGE = "redis-server"


class LauncherError(Exception):
    """A server could not be started; the message is the whole explanation."""


def postgres_bindir() -> Path | None:
    """Return the directory holding initdb and postgres, or None."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        # pg_config also comes with the client headers (libpq-dev): check initdb.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    # Debian installs each major version side by side; take the newest.
    for found in sorted(glob.glob(PG_DEBIAN_GLOB), key=version, reverse=True):
        candidates.append(Path(found))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


def redis_binary() -> Path | None:
    """Return the redis-server executable, or None."""
    found = shutil.which("redis-server") or shutil.which(
        "redis-server", path=REDIS_SEARCH_PATH
    )
    return Path(found) if found else None


def missing_message(*, need_postgres: bool, need_redis: bool) -> str:
    """Return the one line that says which package to install, or ''."""
    missing = []
    if need_postgres:
        missing.append((PG_HINT, PG_PACKAGE, "DATABASE_URL"))
    if need_redis:
        missing.append((REDIS_HINT, REDIS_PACKAGE, "REDIS_URL"))
    if not missing:
        return ""
    what = " and ".join(m[0] for m in missing)
    packages = " ".join(m[1] for m in missing)
    variables = " and ".join(m[2] for m in missing)
    servers = "a running server" if len(missing) == 1 else "running servers"
    return (
        f"make test: {what} not found: apt-get install {packages} (Debian), "
        f"or set {variables} to use {servers} instead."
    )


def _server_user() -> pwd.struct_passwd | None:
    """Return the account PostgreSQL runs as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    # PostgreSQL refuses to run as root: use Debian's postgres account.
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise LauncherError("make test: running as root, but no postgres or nobody user")


def die_with_parent(sig: int) -> Callable[[], None]:
    """Return a preexec_fn: the child gets sig when the launcher dies."""

    def preexec() -> None:
        # A launcher killed with SIGKILL cannot clean up: its children stop on their
        # own (and the next run removes the directory it left).
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig)

    return preexec


def _spawn(
    argv: list[str], *, cwd: Path, log: Path, death_signal: int, **as_user: Any
) -> subprocess.Popen[bytes]:
    """Start a server appending to its log; it gets death_signal when we die."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(death_signal),
            **as_user,
        )


@dataclass
class Server:
    """A started server process and how to reach it."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path


def _wait_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, name: str
) -> bool:
    """Wait until ready() is true; False when the process exited first."""
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if ready():
                return True
            time.sleep(0.05)
    except BaseException:
        # Interrupted while starting: the caller never learns of this process.
        process.kill()
        process.wait()
        raise
    process.kill()
    process.wait()
    raise LauncherError(
        f"make test: {name} did not start within {START_TIMEOUT:.0f}s; "
        f"its log:\n{_tail(log)}"
    )


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _postgres_ready(port: int) -> bool:
    import psycopg2

    try:
        connection = psycopg2.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres"
        )
    except psycopg2.OperationalError:
        return False
    connection.close()
    return True


def start_postgres(bindir: Path, base: Path, max_connections: int = 200) -> Server:
    """Create a cluster in base/postgres and start it on a free port.

    The default max_connections leaves room for the process tests, which run several
    gunicorn and celery children at once; the scale drill asks for a small one.
    """
    user = _server_user()
    as_user: dict = {}
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    data = base / "postgres"
    log = base / "postgres.log"
    # Trust on loopback only; no fsync: the cluster lives for one test run.
    result = subprocess.run(
        [
            str(bindir / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
            "--no-sync",
        ],
        cwd=base,
        capture_output=True,
        text=True,
        check=False,
        **as_user,
    )
    if result.returncode != 0:
        raise LauncherError(f"make test: initdb failed:\n{result.stderr.strip()}")
    for _ in range(BIND_ATTEMPTS):
        port = free_port()
        process = _spawn(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={base}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                f"max_connections={max_connections}",
            ],
            cwd=base,
            log=log,
            # Fast shutdown: ends the sessions a killed run left behind.
            death_signal=signal.SIGINT,
            **as_user,
        )
        if _wait_ready(process, lambda p=port: _postgres_ready(p), log, "PostgreSQL"):
            _create_database(port, "backend")
            return Server(
                "PostgreSQL",
                process,
                f"postgres://postgres@127.0.0.1:{port}/backend",
                log,
            )
        # Lost the port to another process between free_port() and bind: retry.
    raise LauncherError(f"make test: PostgreSQL did not start; its log:\n{_tail(log)}")


def _create_database(port: int, name: str) -> None:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres"
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


def pgbouncer_binary() -> Path | None:
    """Return the pgbouncer executable (Debian: /usr/sbin), or None."""
    found = shutil.which("pgbouncer") or shutil.which(
        "pgbouncer", path=REDIS_SEARCH_PATH
    )
    return Path(found) if found else None


def pgbouncer_config(
    *, port: int, postgres_port: int, directory: Path, pool_size: int
) -> str:
    """PgBouncer in transaction mode in front of every database of the cluster."""
    return f"""[databases]
* = host=127.0.0.1 port={postgres_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/users.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 2000
server_reset_query =
"""


def start_pgbouncer(
    binary: Path,
    directory: Path,
    *,
    postgres_port: int,
    pool_size: int = 60,
    port: int | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start PgBouncer (transaction pooling) on `port` (default: a free one); return
    it and the port.

    `directory` (made by the caller) holds its configuration and log. The default
    pool leaves room for every process the process tests start at once.
    """
    user = _server_user()
    as_user: dict = {}
    (directory / "users.txt").write_text('"postgres" ""\n')
    if user is not None:
        # PgBouncer refuses to run as root.
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    log = directory / "pgbouncer.log"
    fixed = port
    for _ in range(BIND_ATTEMPTS):
        port = fixed or free_port()
        config = directory / "pgbouncer.ini"
        config.write_text(
            pgbouncer_config(
                port=port,
                postgres_port=postgres_port,
                directory=directory,
                pool_size=pool_size,
            )
        )
        process = _spawn(
            [str(binary), str(config)],
            cwd=directory,
            log=log,
            death_signal=signal.SIGTERM,
            **as_user,
        )
        if _wait_ready(process, lambda p=port: _postgres_ready(p), log, "PgBouncer"):
            return process, port
    raise LauncherError(f"make test: PgBouncer did not start; its log:\n{_tail(log)}")


def redis_ready(port: int) -> bool:
    """Does a redis-server answer PING on this port?"""
    import redis

    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def redis_server_argv(*, binary: str, port: int, directory: Path) -> list[str]:
    """Return the command of a throwaway redis-server: loopback only, no persistence."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]


def start_redis(binary: Path, base: Path) -> Server:
    """Start redis-server on a free port, without persistence."""
    data = base / "redis"
    data.mkdir()
    log = base / "redis.log"
    for _ in range(BIND_ATTEMPTS):
        port = free_port()
        process = _spawn(
            redis_server_argv(binary=str(binary), port=port, directory=data),
            cwd=data,
            log=log,
            death_signal=signal.SIGTERM,
        )
        if _wait_ready(process, lambda p=port: redis_ready(p), log, "Redis"):
            return Server("Redis", process, f"redis://127.0.0.1:{port}/0", log)
    raise LauncherError(f"make test: Redis did not start; its log:\n{_tail(log)}")


def stop(server: Server, sig: int) -> None:
    """Stop a server: sig first, SIGKILL when it takes too long."""
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def remove_stale_directories() -> None:
    """Remove directories left by launchers that were killed (SIGKILL)."""
    for path in Path(tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        try:
            pid = int((path / PID_FILE).read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # another user's live launcher


@contextlib.contextmanager
def private_servers(
    *,
    postgres: bool,
    redis: bool,
    report: Callable[[str], None],
    pgbouncer: bool = False,
) -> Iterator[dict[str, str]]:
    """Start the servers asked for; yield their variables; stop them, remove all.

    With pgbouncer, DATABASE_URL leads through PgBouncer in transaction mode and
    DATABASE_DIRECT_URL straight to PostgreSQL, as in a pooled deployment.
    """
    if not (postgres or redis):
        yield {}
        return
    bindir = postgres_bindir() if postgres else None
    redis_bin = redis_binary() if redis else None
    message = missing_message(
        need_postgres=postgres and bindir is None,
        need_redis=redis and redis_bin is None,
    )
    if message:
        raise LauncherError(message)
    bouncer_bin = pgbouncer_binary() if pgbouncer else None
    if pgbouncer and (bindir is None or bouncer_bin is None):
        raise LauncherError(
            "make test: the PgBouncer lane needs pgbouncer (apt-get install "
            "pgbouncer) and a private PostgreSQL (leave DATABASE_URL unset)."
        )
    remove_stale_directories()
    started_at = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
    servers: list[Server] = []
    try:
        (base / PID_FILE).write_text(str(os.getpid()))
        if bindir is not None:
            servers.append(start_postgres(bindir, base))
        if redis_bin is not None:
            servers.append(start_redis(redis_bin, base))
        if bouncer_bin is not None:
            postgres_port = urlsplit(servers[0].url).port
            (base / "pgbouncer").mkdir()
            process, port = start_pgbouncer(
                bouncer_bin, base / "pgbouncer", postgres_port=postgres_port
            )
            url = servers[0].url.replace(f":{postgres_port}/", f":{port}/")
            servers.append(
                Server("PgBouncer", process, url, base / "pgbouncer" / "pgbouncer.log")
            )
        variables = {"PostgreSQL": "DATABASE_URL", "Redis": "REDIS_URL"}
        urls = {variables[s.name]: s.url for s in servers if s.name in variables}
        if bouncer_bin is not None:
            urls["DATABASE_DIRECT_URL"] = urls["DATABASE_URL"]
            urls["DATABASE_URL"] = servers[-1].url
            urls["DB_POOL_MODE"] = "transaction"
        report(
            "private "
            + ", ".join(f"{s.name} at {s.url}" for s in servers)
            + f" (started in {time.monotonic() - started_at:.1f}s)"
        )
        yield urls
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stopping_at = time.monotonic()
        # The pooler first: PostgreSQL's fast shutdown then has no client to wait for.
        for server in reversed(servers):
            # SIGINT: PostgreSQL's fast shutdown (ends the tests' leftover sessions).
            stop(
                server, signal.SIGINT if server.name == "PostgreSQL" else signal.SIGTERM
            )
        shutil.rmtree(base, ignore_errors=True)
        report(
            "private servers stopped and removed "
            f"(in {time.monotonic() - stopping_at:.1f}s)"
        )


class Interrupted(Exception):
    """SIGTERM or SIGHUP while the servers start or stop."""


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run_pytest(args: list[str], env: dict[str, str]) -> int:
    """Run pytest as a child; an interrupt lets it tear down, then returns."""
    die = die_with_parent(signal.SIGINT)

    def preexec() -> None:
        # A shell's background job starts with SIGINT ignored, and Python then never
        # raises KeyboardInterrupt: pytest must hear the SIGINT we forward.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        die()

    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=BACKEND_DIR,
        env=env,
        preexec_fn=preexec,
    )
    interrupted_at: float | None = None

    def forward(_signum: int, _frame: object) -> None:
        nonlocal interrupted_at
        if child.poll() is not None:
            return
        if interrupted_at is None:
            # pytest turns SIGINT into KeyboardInterrupt and runs the teardowns.
            interrupted_at = time.monotonic()
            child.send_signal(signal.SIGINT)
        else:
            child.kill()

    # Ctrl-C reaches pytest itself (same process group): the launcher only waits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return child.wait(timeout=1)
            if (
                interrupted_at is not None
                and time.monotonic() - interrupted_at > INTERRUPT_GRACE
            ):
                child.kill()
    finally:
        # Nothing interrupts the clean-up that follows.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    want_postgres = not env.get("DATABASE_URL")
    want_redis = not env.get("REDIS_URL")
    # The PgBouncer lane (`make test-pgbouncer`): the same tests through a pooler.
    want_pgbouncer = env.pop(POOLER_VARIABLE, "") == "pgbouncer"

    def report(line: str) -> None:
        print(f"make test: {line}", file=sys.stderr, flush=True)

    # Until pytest runs, SIGTERM/SIGHUP unwind like Ctrl-C: the servers are removed.
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)
    try:
        with private_servers(
            postgres=want_postgres,
            redis=want_redis,
            report=report,
            pgbouncer=want_pgbouncer,
        ) as urls:
            env.update(urls)
            returncode = run_pytest(argv, env)
            # Killed by a signal: the shell's convention, 128 + the signal number.
            return returncode if returncode >= 0 else 128 - returncode
    except LauncherError as error:
        print(error, file=sys.stderr)
        return EXIT_MISSING
    except (Interrupted, KeyboardInterrupt):
        report("interrupted while starting the servers")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
