"""Throwaway certificate authorities and server certificates, made with openssl."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA's certificate: what a client trusts
    cert: Path  # the server's certificate, signed by the CA
    key: Path  # the server's private key


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def throwaway_ca(
    directory: Path,
    *,
    dns: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
) -> TlsFiles:
    """A CA valid for one day and a server certificate it signed for `dns` and
    `ips` (subjectAltName: what verify-full and OpenSSL's host check compare)."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.crt", "-days", "1", "-subj", "/CN=Throwaway test CA",
            cwd=directory)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", f"/CN={dns[0]}", cwd=directory)  # fmt: skip
    names = [f"DNS:{name}" for name in dns] + [f"IP:{ip}" for ip in ips]
    (directory / "san.cnf").write_text(f"subjectAltName={','.join(names)}\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "1",
            "-extfile", "san.cnf", cwd=directory)  # fmt: skip
    return TlsFiles(
        ca=directory / "ca.crt",
        cert=directory / "server.crt",
        key=directory / "server.key",
    )
