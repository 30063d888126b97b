"""HAProxy on 127.0.0.1 in front of web replicas, as an ALB or ingress would be
(Debian's haproxy): the release and scale drills put their load through it."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.support.net import free_port


class Balancer:
    """HAProxy on 127.0.0.1 with a runtime socket to re-point a server slot."""

    def __init__(self, directory: Path, servers: dict[str, str], check: str) -> None:
        """`servers`: slot name -> host:port; `check`: HAProxy's check timing."""
        self.port = free_port()
        self.socket = directory / "haproxy.sock"
        lines = [
            "global",
            f"  stats socket {self.socket} mode 600 level admin",
            "  maxconn 4096",
            "defaults",
            "  mode http",
            "  timeout connect 2s",
            "  timeout client 30s",
            "  timeout server 30s",
            # An ALB does not retry a request; neither does this balancer.
            "  retries 0",
            "frontend front",
            f"  bind 127.0.0.1:{self.port}",
            "  default_backend web",
            "backend web",
            # As an ALB terminating TLS: the app sees https and the client's address.
            "  http-request set-header X-Forwarded-Proto https",
            "  option forwardfor",
            "  option httpchk",
            "  http-check send meth GET uri /health/ready/ ver HTTP/1.1 "
            "hdr Host 127.0.0.1",
            "  http-check expect status 200",
            f"  default-server {check}",
        ]
        lines += [f"  server {name} {addr} check" for name, addr in servers.items()]
        config = directory / "haproxy.cfg"
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)],
            stdout=(directory / "haproxy.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            assert self.process.poll() is None, (directory / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.1)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(self.socket))
            client.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self, server: str) -> str:
        for row in self.command("show stat").splitlines():
            fields = row.split(",")
            if len(fields) > 17 and fields[0] == "web" and fields[1] == server:
                return fields[17]
        raise AssertionError(f"no server {server} in haproxy's stats")

    def wait_status(self, server: str, wanted: str, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.status(server).startswith(wanted):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"{server} not {wanted} after {timeout}s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
