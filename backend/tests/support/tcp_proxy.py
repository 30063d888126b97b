"""A small TCP proxy a test can start late, cut and restore (fault injection)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class TcpProxy:
    """Forward 127.0.0.1:<port> to a target; `stop()` closes every connection.

    `freeze()` stops forwarding without closing anything, on every connection
    open or opened later: the peers see a live TCP connection that never answers.
    """

    def __init__(
        self,
        target_port: int,
        listen_port: int = 0,
        *,
        target_host: str = "127.0.0.1",
        listen_host: str = "127.0.0.1",
        resolve: Callable[[], tuple[str, int]] | None = None,
    ) -> None:
        """`resolve`, if given, names the target anew for each connection (host,
        port), e.g. the current master of a Sentinel set; target_* are then unused.
        """
        self.resolve = resolve
        self.target_port = target_port
        self.listen_port = listen_port
        self.target_host = target_host
        self.listen_host = listen_host
        self._server: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()

    def start(self) -> TcpProxy:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.listen_host, self.listen_port))
        server.listen(128)
        self.listen_port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                target = (
                    self.resolve()
                    if self.resolve
                    else (self.target_host, self.target_port)
                )
                upstream = socket.create_connection(target, timeout=5)
                upstream.settimeout(None)
            except Exception:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pipe, args=(src, dst), daemon=True
                ).start()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._server is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would
            # leave the socket listening on Linux.
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            for sock in self._connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._connections.clear()


class SilentServer:
    """Accepts TCP connections and never answers (a hung Redis)."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(128)
        self.port = self._server.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self._server.close()
        for conn in self._held:
            conn.close()
