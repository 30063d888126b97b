"""gunicorn configuration: every value from the variable registry (runtime/env/).

Started as `gunicorn -c config/gunicorn_conf.py config.wsgi` (or config.asgi with
GUNICORN_WORKER_CLASS=uvicorn). The configuration is validated here, in the master,
so a bad environment stops the server with one block naming every bad variable.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.cpus import worker_count
from runtime.draining import drain_active, drain_begin
from runtime.env import load_or_exit
from runtime.gunicorn_logging import JsonAccessLogger
from runtime.logging import logging_config

ENV = load_or_exit()


# --- Server socket and workers ------------------------------------------------------


def _listen_address(port: int) -> str:
    """Listen on every IPv6 and IPv4 address where the kernel has IPv6.

    Railway's private network is IPv6-only; on Linux "[::]" also accepts IPv4
    (net.ipv6.bindv6only=0, the default). Without IPv6 (disabled in the kernel),
    IPv4 alone.
    """
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return f"0.0.0.0:{port}"
    return f"[::]:{port}"


bind = _listen_address(ENV["PORT"])
workers = worker_count(
    configured=ENV["GUNICORN_WORKERS"], maximum=ENV["GUNICORN_MAX_WORKERS"]
)
if ENV["GUNICORN_WORKER_CLASS"] == "uvicorn":
    # ASGI; settings force CONN_MAX_AGE=0 for it (persistent connections, one per
    # fresh thread, exhausted PostgreSQL within seconds when measured).
    wsgi_app = "config.asgi:application"
    worker_class = "uvicorn_worker.UvicornWorker"
else:
    wsgi_app = "config.wsgi:application"
    worker_class = "gthread"
    threads = ENV["GUNICORN_THREADS"]

# The master imports the application once and forks the workers from it: a worker is
# ready the moment it is forked, instead of every worker importing Django at once
# (5 imports of ~1.7 s each competing for 2 CPUs made the first /health/ 200 take
# 3-11 s; bench/README.md, cold start), and the imported code is shared copy-on-write.
# Nothing opens a connection at import; pre_fork below makes sure none is inherited.
preload_app = True

timeout = ENV["GUNICORN_TIMEOUT"]
graceful_timeout = ENV["GUNICORN_GRACEFUL_TIMEOUT"]
# Above the idle timeout of common load balancers (ALB 60 s), so the balancer, not
# gunicorn, closes idle connections and never sends on a socket we just closed.
keepalive = ENV["GUNICORN_KEEPALIVE"]
max_requests = ENV["GUNICORN_MAX_REQUESTS"]
max_requests_jitter = ENV["GUNICORN_MAX_REQUESTS_JITTER"]
forwarded_allow_ips = ENV["FORWARDED_ALLOW_IPS"]
# Heartbeat files on tmpfs: a disk-backed /tmp can stall workers into timeouts.
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    worker_tmp_dir = "/dev/shm"
# The control socket lives under $HOME by default, which is read-only or foreign in
# containers (read-only root, arbitrary uid); nothing here uses it.
control_socket_disable = True

# --- Logging --------------------------------------------------------------------------

JsonAccessLogger.trusted_proxies = ENV["TRUSTED_PROXY_COUNT"]
logger_class = JsonAccessLogger
accesslog = "-"
errorlog = "-"
loglevel = ENV["LOG_LEVEL"].lower()
logconfig_dict = logging_config(log_format=ENV["LOG_FORMAT"], level=ENV["LOG_LEVEL"])

# --- Prometheus multiprocess mode -----------------------------------------------------

# Must be set before the application (and so prometheus_client) is imported: the
# entrypoint sets it, and a direct `gunicorn -c` start gets a private directory here.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp"
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(
        base, f"prometheus-gunicorn-{os.getpid()}"
    )
# Emptied here, before preload_app imports the application: files of a previous run
# would be summed in, and emptying it later would delete the files the master's
# metrics already point at.
shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server) -> None:
    server.log.info(
        "gunicorn starting",
        extra={
            "workers": server.cfg.workers,
            "worker_class": server.cfg.worker_class_str,
            "threads": server.cfg.threads,
            "bind": server.cfg.bind,
        },
    )


def pre_fork(server, worker) -> None:
    _close_database_connections()
    # The worker's full collections skip what is frozen: without this, each walked
    # the whole preloaded application (63-81 ms with the GIL held, every request of
    # the worker waiting) and dirtied the pages shared with the master. Run before
    # every fork, respawns included; runtime/gc_pauses.py has the measurements.
    gc.freeze()


def post_fork(server, worker) -> None:
    # Imported here, in the worker: the frozen-objects gauge belongs to the process
    # that creates it (see the module). Metrics never stop a worker from booting: a
    # worker that fails here exits with a boot error, and gunicorn then stops the
    # whole server (a full /dev/shm on a max_requests respawn would do it).
    try:
        from runtime.gc_pauses import gc_frozen_report, gc_pauses_record

        gc_frozen_report()
        if ENV["GUNICORN_WORKER_CLASS"] == "gthread":
            gc_pauses_record()
    except Exception:  # reported; the worker serves without these metrics
        server.log.exception("garbage collection metrics unavailable")


def _close_database_connections() -> None:
    """Never hand a worker the master's database connection.

    Two processes on one PostgreSQL socket interleave their protocol messages. The
    master runs no query today; this keeps it so if an import ever does.
    """
    if "django.db" not in sys.modules:
        return
    from django.conf import settings

    if settings.configured:  # only once the application has loaded its settings
        from django.db import connections

        connections.close_all()


def when_ready(server) -> None:
    server.log.info("gunicorn ready", extra={"bind": server.cfg.bind})
    _drain_before_stop(server, seconds=ENV["WEB_DRAIN_SECONDS"])


def _drain_before_stop(server, *, seconds: int) -> None:
    """Make the first SIGTERM drain for `seconds`, then stop as gunicorn does.

    gunicorn's master closes its listeners as soon as it handles SIGTERM; a load
    balancer that has not yet noticed would get refused connections. The master's
    loop dispatches queued signals to `handle_<name>` methods, so replacing
    handle_term on this arbiter is the seam: the first SIGTERM sets the shared
    draining flag (readiness 503, `Connection: close`), and a timer queues a second
    SIGTERM after the drain, which takes gunicorn's own path (close listeners,
    SIGTERM workers, GUNICORN_GRACEFUL_TIMEOUT). SIGINT/SIGQUIT still stop at once.
    """
    if seconds <= 0:
        return
    graceful_stop = server.handle_term

    def handle_term() -> None:
        if drain_active():
            server.log.info(
                "drain over; graceful stop", extra={"drain_seconds": seconds}
            )
            graceful_stop()  # raises StopIteration: the arbiter halts
        drain_begin()
        server.log.info(
            "draining: readiness answers 503, listener stays open",
            extra={"drain_seconds": seconds},
        )
        # A timer signal, not a thread: the master forks workers, and SIGALRM's
        # handler only queues a signal the way gunicorn's own handler does.
        signal.signal(
            signal.SIGALRM, lambda *_: server.SIG_QUEUE.put_nowait(signal.SIGTERM)
        )
        signal.setitimer(signal.ITIMER_REAL, seconds)

    server.handle_term = handle_term


def pre_request(worker, req) -> None:
    """While draining, answer `Connection: close`: clients reconnect elsewhere."""
    if drain_active():
        req.force_close()


if ENV["GUNICORN_WORKER_CLASS"] == "gthread":
    # The pauses post_fork records are published after each request (uvicorn's worker
    # calls no post_request, so it records none).
    def post_request(worker, req, environ, resp) -> None:
        from runtime.gc_pauses import gc_pauses_publish

        gc_pauses_publish()


def worker_abort(worker) -> None:
    worker.log.error("worker aborted (timeout)", extra={"worker_pid": worker.pid})


def child_exit(server, worker) -> None:
    """Mark the worker's metric files dead so its live gauges stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    server.log.info("worker exited", extra={"worker_pid": worker.pid})


def on_exit(server) -> None:
    server.log.info("gunicorn stopped")
