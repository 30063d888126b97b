"""`make run`'s mode (DEBUG=true, SQLite, no Redis): the domain works there too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.env import clean_environ
from tests.support.processes import run_python

pytestmark = pytest.mark.slow

FLOW = """
from django.contrib.auth import get_user_model
from apps.inventory import services
user = get_user_model().objects.create_user("dev", is_staff=True)
services.product_create(sku="DEV-1", name="Dev")
services.stock_restock(sku="DEV-1", quantity=3, actor=user)
result = services.reservation_create(
    owner=user, sku="DEV-1", quantity=2, ttl_seconds=60
)
held = result.reservation.expires_at - result.reservation.created_at
print("reserved", result.reservation.quantity, round(held.total_seconds()))
services.reservation_confirm(reservation_id=result.reservation.id, actor=user)
print("confirmed")
# A client's Idempotency-Key: the retry answers with the first reservation.
first = services.reservation_create(
    owner=user, sku="DEV-1", quantity=1, idempotency_key="dev-key"
)
retry = services.reservation_create(
    owner=user, sku="DEV-1", quantity=1, idempotency_key="dev-key"
)
same = retry.reservation.id == first.reservation.id
print("keyed", first.created, retry.created, same)
"""


def test_reservation_flow_on_sqlite(tmp_path: Path) -> None:
    env = clean_environ(
        DEBUG="true", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    )
    migrated = run_python(["manage.py", "migrate", "-v0"], env=env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    flow = run_python(["manage.py", "shell", "-c", FLOW], env=env, timeout=120)
    assert flow.returncode == 0, flow.stderr
    assert flow.stdout.split("\n")[-4:] == [
        "reserved 2 60",
        "confirmed",
        "keyed True False True",
        "",
    ]
