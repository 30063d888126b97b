"""A Redis proxy for the Compose liveness test, run in a container of the stack.

`python freeze_proxy.py <listen port> <redis host> <redis port>`; SIGUSR1 freezes
every connection (open or opened later: live TCP, no answer), SIGUSR2 thaws.
"""

from __future__ import annotations

import signal
import sys
import threading

from tcp_proxy import TcpProxy


def main() -> None:
    listen, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    proxy = TcpProxy(port, listen, target_host=host, listen_host="0.0.0.0").start()
    signal.signal(signal.SIGUSR1, lambda *_: (proxy.freeze(), print("frozen")))
    signal.signal(signal.SIGUSR2, lambda *_: (proxy.thaw(), print("thawed")))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"proxy :{listen} -> {host}:{port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
