"""The project's error body, without Django: also for layers outside it (the ASGI
body limit, the worker's metrics port)."""

from __future__ import annotations

import json
from typing import Any


def error_document(
    *, code: str, message: str, request_id: str | None, details: Any = None
) -> dict[str, Any]:
    """Return {"error": {"code", "message", "details"}, "request_id"}."""
    return {
        "error": {"code": code, "message": message, "details": details or {}},
        "request_id": request_id,
    }


def error_json(*, code: str, message: str, request_id: str | None) -> bytes:
    """The error body encoded for a raw response."""
    return json.dumps(
        error_document(code=code, message=message, request_id=request_id)
    ).encode()
