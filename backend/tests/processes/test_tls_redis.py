"""Redis over TLS (`rediss://`, as ElastiCache in-transit encryption needs it).

A throwaway CA and server certificate made with openssl, Debian's redis-server on a
TLS-only port, and the URL exactly as the guide documents it (no query parameters).
The clients trust the private CA through OpenSSL's own SSL_CERT_FILE, as an operator
with a private CA would; ElastiCache's certificates need nothing (public CA).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from celery import Celery
from rest_framework.authtoken.models import Token

from tests.support.env import with_venv_path
from tests.support.net import free_port
from tests.support.processes import WORKER_COMMAND, healthcheck
from tests.support.redis import stop_redis
from tests.support.tls import throwaway_ca
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A TLS-only redis-server; yields its rediss:// URL and the CA file."""
    throwaway_ca(tmp_path)
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port),
         "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
         "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no",
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, ssl_ca_certs=str(tmp_path / "ca.crt"))
    wait_until(lambda: _pings(client), 10, "TLS redis-server")
    yield url, tmp_path / "ca.crt"
    stop_redis(server)


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


def test_untrusted_ca_is_refused(tls_redis) -> None:
    url, _ = tls_redis
    # Without the CA the certificate does not verify: TLS is really checked.
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(url).ping()


def test_web_worker_and_beat_run_on_rediss(
    tls_redis, start_entrypoint, production_env, make_product, user, tmp_path
) -> None:
    url, ca = tls_redis
    tls = {"REDIS_URL": url, "SSL_CERT_FILE": str(ca)}
    queue = f"tls-{uuid.uuid4().hex[:8]}"

    port = free_port()
    web = start_entrypoint("web", PORT=str(port), **tls)
    web.wait_for_line(lambda line: "Listening at" in line, 60)
    worker = start_entrypoint(
        "worker",
        *WORKER_COMMAND,
        CELERY_WORKER_QUEUES=queue,
        CELERY_WORKER_CONCURRENCY="1",
        **tls,
    )
    worker.wait_for_line(lambda line: "ready." in line, 60)
    beat = start_entrypoint("beat", **tls)

    # The cache and the readiness check reach Redis over TLS.
    ready = requests.get(f"{web.base_url}/health/ready/", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok", ready.text

    # The gate: a reservation takes units from the counter in the TLS Redis.
    from apps.inventory.gate import gate_key

    product = make_product(on_hand=5)
    token = Token.objects.create(user=user)
    reserved = requests.post(
        f"{web.base_url}/api/v1/reservations/",
        json={"sku": product.sku, "quantity": 2},
        headers={
            "Authorization": f"Token {token.key}",
            "Host": "localhost",
            "X-Forwarded-Proto": "https",
        },
        timeout=10,
    )
    assert reserved.status_code == 201, reserved.text
    client = redis.Redis.from_url(url, ssl_ca_certs=str(ca), decode_responses=True)
    assert client.get(gate_key(product.sku)) == "3"

    # A task round-trips through the TLS broker.
    marker = uuid.uuid4().hex
    sender = Celery(broker=url, broker_use_ssl={"ssl_ca_certs": str(ca)})
    sender.send_task("tests.log_line", kwargs={"marker": marker}, queue=queue)
    wait_until(lambda: client.get(f"test:{marker}:done"), 30, "task over TLS")

    # Beat holds its RedBeat lock in the TLS Redis and keeps its heartbeat fresh.
    probe_env = with_venv_path(
        {**production_env, "HEARTBEAT_DIR": str(tmp_path), **tls}
    )
    wait_until(lambda: healthcheck(probe_env).returncode == 0, 60, "beat heartbeat")
    wait_until(lambda: client.exists("backend:redbeat::lock"), 30, "RedBeat lock")
    for process in (web, worker, beat):
        assert process.process.poll() is None, process.lines
        assert not [line for line in process.lines if "Traceback" in line], (
            process.lines
        )
