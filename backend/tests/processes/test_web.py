"""The web role: gunicorn settings, graceful stop, worker count, ASGI option."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from runtime.cpus import usable_cpus, worker_count
from tests.support.env import PRODUCTION_ENV, UNREACHED_REDIS_URL, clean_environ
from tests.support.processes import run_python

pytestmark = pytest.mark.slow


def test_sigterm_completes_in_flight_requests(start_gunicorn) -> None:
    server = start_gunicorn(
        "tests.support.slow_wsgi:application", GUNICORN_GRACEFUL_TIMEOUT="10"
    )
    results: list[tuple[float, object]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = requests.get(server.base_url + "/slow/", timeout=15)
                outcome: object = response.status_code
            except requests.RequestException as exc:
                outcome = exc
            results.append((started, outcome))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(2.5)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=20)
    stopped_after = time.monotonic() - signalled
    stop.set()
    for thread in threads:
        thread.join(timeout=20)
    # Requests accepted before the signal: each finished with 200.
    before = [outcome for started, outcome in results if started < signalled - 0.05]
    assert len(before) >= 12
    assert all(outcome == 200 for outcome in before), before
    # At least one request was mid-flight at the signal and still completed.
    in_flight = [
        o for s, o in results if signalled - 1.0 < s < signalled - 0.05 and o == 200
    ]
    assert in_flight
    assert code == 0
    assert stopped_after < 10


def test_listens_on_ipv6_and_ipv4(start_gunicorn) -> None:
    # Railway's private network is IPv6-only; everything else reaches IPv4.
    server = start_gunicorn()
    port = server.base_url.rsplit(":", 1)[1]
    assert any(f"Listening at: http://[::]:{port}" in line for line in server.lines)
    for host in ("[::1]", "127.0.0.1"):
        response = requests.get(f"http://{host}:{port}/health/", timeout=5)
        assert response.status_code == 200, host


def test_starts_with_unwritable_home_and_no_control_socket(start_gunicorn) -> None:
    # /proc cannot hold a directory even for root: gunicorn's default control socket
    # under $HOME/.gunicorn would fail there.
    server = start_gunicorn(HOME="/proc")
    assert requests.get(server.base_url + "/health/", timeout=5).status_code == 200
    time.sleep(0.5)
    assert not [line for line in server.lines if "Control server" in line]


def test_uvicorn_worker_serves_asgi_without_persistent_connections(
    start_gunicorn,
) -> None:
    server = start_gunicorn(GUNICORN_WORKER_CLASS="uvicorn")
    ready = requests.get(server.base_url + "/health/ready/", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    assert any("uvicorn_worker.UvicornWorker" in line for line in server.lines)


@pytest.mark.parametrize(
    ("worker_class", "expected"), [("gthread", "600"), ("uvicorn", "0")]
)
def test_conn_max_age_follows_the_worker_class(
    worker_class: str, expected: str
) -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.DATABASES['default']['CONN_MAX_AGE'])"
    )
    env = clean_environ(
        **PRODUCTION_ENV,
        DATABASE_URL="postgres://a:b@db/app",
        REDIS_URL=UNREACHED_REDIS_URL,
        DJANGO_SETTINGS_MODULE="config.settings",
        GUNICORN_WORKER_CLASS=worker_class,
    )
    result = run_python(["-c", code], env=env)
    assert result.stdout.strip().splitlines()[-1] == expected, result.stderr


def cgroup(tmp_path: Path, cpu_max: str) -> Path:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


def test_worker_count_under_half_a_cpu_quota(tmp_path: Path) -> None:
    root = cgroup(tmp_path, "50000 100000")
    assert usable_cpus(root) == 0.5
    assert worker_count(configured=None, maximum=12, cgroup_root=root) == 3


def test_worker_count_under_a_three_cpu_quota(tmp_path: Path) -> None:
    root = cgroup(tmp_path, "300000 100000")
    expected_cpus = min(3, len(os.sched_getaffinity(0)))
    assert worker_count(configured=None, maximum=12, cgroup_root=root) == (
        2 * expected_cpus + 1
    )


def test_worker_count_without_quota_uses_affinity_and_cap(tmp_path: Path) -> None:
    root = cgroup(tmp_path, "max 100000")
    affinity = len(os.sched_getaffinity(0))
    assert (
        worker_count(configured=None, maximum=64, cgroup_root=root) == 2 * affinity + 1
    )
    assert worker_count(configured=None, maximum=2, cgroup_root=root) == 2


def test_worker_count_cgroup_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == min(1.5, len(os.sched_getaffinity(0)))
    assert worker_count(configured=None, maximum=12, cgroup_root=tmp_path) == 5


def test_configured_worker_count_wins(tmp_path: Path) -> None:
    root = cgroup(tmp_path, "50000 100000")
    assert worker_count(configured=7, maximum=12, cgroup_root=root) == 7


def test_gunicorn_reports_the_computed_worker_count(start_gunicorn) -> None:
    server = start_gunicorn(GUNICORN_WORKERS="3", GUNICORN_THREADS="2")
    line = server.wait_for_line(lambda text: '"gunicorn starting"' in text)
    assert '"workers": 3' in line
    assert '"worker_class": "gthread"' in line
    assert '"threads": 2' in line


def test_workers_fork_from_a_preloaded_master_and_metrics_add_up(
    start_gunicorn,
) -> None:
    token = "p" * 40
    server = start_gunicorn(METRICS_TOKEN=token, GUNICORN_WORKERS="3")
    master = server.process.pid
    # preload_app: the master imported the application (psycopg2's C extension is
    # mapped into it), so forked workers start with it loaded.
    maps = Path(f"/proc/{master}/maps").read_text()
    assert "psycopg2/_psycopg" in maps
    children = Path(f"/proc/{master}/task/{master}/children")
    deadline = time.monotonic() + 10
    while len(children.read_text().split()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(children.read_text().split()) == 3

    # Concurrent requests land on several workers; the scrape sums every worker's
    # counts exactly (a worker writing into the master's inherited metric files
    # would lose or double some).
    https = {"X-Forwarded-Proto": "https"}

    def post() -> None:
        requests.post(server.base_url + "/nope/", headers=https, timeout=10)

    threads = [threading.Thread(target=post) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    response = requests.get(
        server.base_url + "/metrics",
        headers={"Authorization": f"Bearer {token}", **https},
        timeout=5,
    )
    assert response.status_code == 200
    posts = [
        line
        for line in response.text.splitlines()
        if line.startswith('django_http_requests_total_by_method_total{method="POST"}')
    ]
    assert posts == ['django_http_requests_total_by_method_total{method="POST"} 30.0']


def _metric_values(text: str, name: str) -> dict[str, float]:
    """Samples of one metric in a Prometheus scrape: labels text -> value."""
    samples = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name) :].rpartition(" ")
            samples[labels] = float(value)
    return samples


def _children(master: int, count: int, *, other_than: frozenset = frozenset()) -> set:
    """The master's `count` worker pids once none of them is in `other_than`."""
    path = Path(f"/proc/{master}/task/{master}/children")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = set(path.read_text().split())
        if len(pids) == count and not pids & other_than:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"no {count} workers (besides {set(other_than)}): {pids}")


def test_workers_fork_with_the_preloaded_heap_frozen_and_time_collections(
    start_gunicorn, tmp_path: Path
) -> None:
    token = "g" * 40
    metric_files = tmp_path / "prometheus"
    server = start_gunicorn(
        METRICS_TOKEN=token,
        GUNICORN_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(metric_files),
    )
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}
    first = _children(server.process.pid, 2)
    killed = min(first)
    os.kill(int(killed), signal.SIGKILL)
    workers = _children(server.process.pid, 2, other_than=frozenset({killed}))

    # Each worker reports its frozen heap in a file of its own; the killed worker's
    # is gone (child_exit), so it no longer counts in the minimum.
    frozen_files = {p.name for p in metric_files.glob("gauge_livemin_*.db")}
    assert frozen_files == {f"gauge_livemin_{pid}.db" for pid in workers}

    # Requests allocate, so collections run and are published after the requests
    # that follow them.
    deadline = time.monotonic() + 20
    while True:
        requests.get(server.base_url + "/nope/", headers=headers, timeout=10)
        scrape = requests.get(server.base_url + "/metrics", headers=headers, timeout=5)
        counts = _metric_values(scrape.text, "python_gc_pause_seconds_count")
        if counts.get('{generation="0"}', 0) > 0 or time.monotonic() > deadline:
            break
    assert counts.get('{generation="0"}', 0) > 0

    # livemin: the fewest frozen objects in any live worker, the respawned one
    # included (pre_fork froze again before forking it). The preloaded application
    # is about 100,000 objects (99,889 measured); without the freeze a worker
    # reports a few hundred at most (375 measured).
    frozen = _metric_values(scrape.text, "python_gc_frozen_objects")
    assert list(frozen) == [""]
    assert frozen[""] > 50_000
