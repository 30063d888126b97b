"""gunicorn's access log as one JSON line per request, through the project's logging."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger

from runtime.client_ip import client_ip_from
from runtime.probes import PROBE_PATHS


class JsonAccessLogger(Logger):
    """gunicorn logger whose access lines carry structured fields."""

    trusted_proxies = 0

    def access(self, resp: Any, req: Any, environ: dict, request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        request_id = None
        for name, value in resp.headers:
            if name.lower() == "x-request-id":
                request_id = value
                break
        path = environ.get("PATH_INFO", "")
        duration_ms = round(request_time.total_seconds() * 1000, 2)
        # Probes arrive every few seconds from every load balancer: not at INFO.
        level = logging.DEBUG if path in PROBE_PATHS else logging.INFO
        status = resp.status_code if hasattr(resp, "status_code") else resp.status
        self.access_log.log(
            level,
            "%s %s %s",
            environ.get("REQUEST_METHOD"),
            path,
            status,
            extra={
                "request_id": request_id,
                "method": environ.get("REQUEST_METHOD"),
                "path": path,
                "status": int(str(status).split()[0]),
                "duration_ms": duration_ms,
                "bytes": getattr(resp, "sent", None),
                "client_ip": client_ip_from(
                    remote_addr=environ.get("REMOTE_ADDR") or "",
                    forwarded_for=environ.get("HTTP_X_FORWARDED_FOR", ""),
                    trusted_proxies=self.trusted_proxies,
                ),
                "user_agent": environ.get("HTTP_USER_AGENT"),
            },
        )
