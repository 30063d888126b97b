"""Bound a request body before Django reads it, under the ASGI worker.

Django's ASGI handler reads the whole body, spooling it to a temporary file, before
any middleware or view can refuse it; MAX_REQUEST_BODY_BYTES then only answers 413
afterwards. Measured before this layer: a 40 MiB unauthenticated upload was spooled
to /tmp before its 413 (a memory-backed emptyDir on Kubernetes), and a declared 50 MB
body that never came held the request with no answer. The WSGI (gthread) path does
not need it: Django reads the body lazily there and refuses it on Content-Length.

Here a declared Content-Length over the limit gets its 413 at once, unread, and a
body without one (chunked) is counted as it arrives and refused as soon as it passes
the limit: the application never receives more than the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from runtime.context import request_id_accept
from runtime.error_document import error_json

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """The body passed the limit while it was being read."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _refuse(scope: Scope, send: Send) -> None:
    request_id = request_id_accept(_header(scope, b"x-request-id"))
    body = error_json(
        code="request_too_large",
        message="Request body too large.",
        request_id=request_id,
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                # The rest of the body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def body_limit(app: ASGIApp, *, limit: int) -> ASGIApp:
    """Wrap an ASGI app so no HTTP request body over `limit` bytes reaches it."""

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if (
            declared is not None
            and declared.strip().isdigit()
            and int(declared) > limit
        ):
            logger.warning(
                "request body refused unread: Content-Length %s over "
                "MAX_REQUEST_BODY_BYTES %d",
                declared.strip(),
                limit,
            )
            await _refuse(scope, send)
            return
        passed = 0
        started = False

        async def receive_within_limit() -> Message:
            nonlocal passed
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                if passed + size > limit:
                    raise BodyTooLarge
                passed += size
            return message

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, receive_within_limit, send_tracking)
        except BodyTooLarge:
            logger.warning(
                "request body refused while streaming: over MAX_REQUEST_BODY_BYTES "
                "%d after %d bytes passed to the application",
                limit,
                passed,
                extra={"body_bytes_passed": passed},
            )
            if not started:
                await _refuse(scope, send)

    return limited
