"""Per-request context shared with logging and Celery (a contextvar, thread-safe)."""

import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)

# Accept an upstream id only if it is short and made of token characters, so a client
# cannot inject log lines, headers or megabytes through it.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def request_id_new() -> str:
    """Return a fresh request id."""
    return uuid.uuid4().hex


def request_id_accept(raw: str | None) -> str:
    """Return the incoming id if it is sane, else a new one."""
    if raw and SANE_REQUEST_ID.fullmatch(raw):
        return raw
    return request_id_new()


def request_id_get() -> str | None:
    """Return the id of the request (or task) being served, if any."""
    return request_id_var.get()
