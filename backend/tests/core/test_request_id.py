"""Request ids: which incoming ids are accepted."""

from __future__ import annotations

import pytest

from runtime.context import request_id_accept


@pytest.mark.parametrize(
    "raw", ["abcdef12", "req-1234.upstream:7", "0123456789abcdef0123456789abcdef"]
)
def test_sane_ids_are_kept(raw: str) -> None:
    assert request_id_accept(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [None, "", "short", "has space inside", "new\nline-injected", "x" * 129, "é" * 10],
)
def test_insane_ids_are_replaced(raw: str | None) -> None:
    replaced = request_id_accept(raw)
    assert replaced != raw
    assert len(replaced) == 32
    assert int(replaced, 16) >= 0
