"""Schemathesis hooks (SCHEMATHESIS_HOOKS) for tests/hostile/test_schemathesis.py.

The Idempotency-Key's contract (its description in the schema) is that a client
makes the key unique per intended reservation. A generator cannot know what a
reservation is: without an example it still draws the shortest valid strings
("0", "00") for many different bodies, and the server rightly answers 422. This
hook plays the client's part and nothing more: a generated valid key is suffixed
with a digest of the body, so one key still goes with one body (a resent request
is a replay, as a client's retry is), and another body never reuses it. Invalid
keys (the negative cases) pass unchanged, and no status is added to the expected
ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import schemathesis

# apps.inventory.api's pattern (that module needs Django set up; this one is loaded
# by the schemathesis CLI without it). test_declared_statuses.py keeps them equal.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,255}")

HEADER = "Idempotency-Key"
SUFFIX_LENGTH = 17  # "." and 16 hex digits


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = case.headers or {}
    key = headers.get(HEADER)
    if not isinstance(key, str) or not IDEMPOTENCY_KEY.fullmatch(key):
        return
    body = json.dumps(case.body, sort_keys=True, default=str)
    digest = hashlib.sha256(body.encode()).hexdigest()[: SUFFIX_LENGTH - 1]
    headers[HEADER] = f"{key[: 255 - SUFFIX_LENGTH]}.{digest}"
    case.headers = headers
