"""The backup and restore drill (`make restore-drill`; DEPLOYMENT_GUIDE.md, "Backup
and restore").

State made through the API and the services (products, pending, confirmed,
released and expired reservations, the ledger), a custom-format pg_dump, the
database dropped and Redis emptied, pg_restore into a new database, then
`manage.py restore_resync` as a process. Asserted: every table's rows identical
(a checksum of its ordered rows), the API's JSON as before, an Idempotency-Key
replayed as before, no unit sold twice when a product is hammered to sold-out
afterwards, and a reservation pending at backup time released at its deadline.

Host processes only (the launcher's PostgreSQL and Redis, gunicorn, the command):
no container engine. It empties the run's Redis database, so it runs on its own.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.db import connection, connections
from rest_framework.authtoken.models import Token

from apps.inventory import gate
from apps.inventory.models import Reservation, Stock, StockMovement
from apps.inventory.services import reservation_create, reservations_expire
from tests.support import processes
from tests.support.env import production_environ
from tests.support.postgres import admin_connection, database_name
from tests.support.processes import run, run_python
from tests.support.servers import postgres_bindir

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Owners take many units here: the limits are not what this drill is about.
LIMITS = {
    "RESERVATION_MAX_UNITS_PER_OWNER": "100000",
    "RESERVATION_MAX_UNITS_PER_OWNER_PER_HOUR": "100000",
}
PENDING_TTL = 30  # the API's shortest
HAMMER_THREADS = 12


class Api:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Token {token}",
                "Host": "localhost",
                "X-Forwarded-Proto": "https",
            }
        )

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=15)

    def post(self, path: str, body: dict | None = None, **headers: str):
        return self.session.post(
            self.base_url + path, json=body, headers=headers, timeout=15
        )


def _ok(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def _table_checksums() -> dict[str, tuple[int, str]]:
    """Every table's row count and the md5 of its rows, ordered by their text."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            " ORDER BY table_name"
        )
        tables = [name for (name,) in cursor.fetchall()]
        sums = {}
        for table in tables:
            quoted = connection.ops.quote_name(table)
            # The names come from the catalog, quoted: not input.
            query = (
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n'"  # noqa: S608
                " ORDER BY t::text)), '') FROM " + quoted + " t"
            )
            cursor.execute(query)
            sums[table] = tuple(cursor.fetchone())
    return sums


def _libpq_args() -> list[str]:
    settings = connection.settings_dict
    return [
        "--host",
        settings["HOST"],
        "--port",
        str(settings["PORT"]),
        "--username",
        settings["USER"],
    ]


def _api_state(api: Api, reservation_ids: list[str]) -> dict:
    return {
        "products": _ok(api.get("/api/v1/products/?limit=100"), 200),
        "reservations": {
            rid: _ok(api.get(f"/api/v1/reservations/{rid}/"), 200)
            for rid in reservation_ids
        },
    }


def _database_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def test_backup_destroy_restore_resync(
    start_gunicorn, staff, make_user, redis_client, tmp_path: Path
) -> None:
    drill_started = time.monotonic()
    bindir = postgres_bindir()
    assert bindir is not None, "PostgreSQL's client binaries (pg_dump, pg_restore)"
    buyers = [make_user() for _ in range(3)]
    tokens = {u.pk: Token.objects.create(user=u).key for u in [staff, *buyers]}
    web = start_gunicorn(**LIMITS)
    admin = Api(web.base_url, tokens[staff.pk])
    buyer = Api(web.base_url, tokens[buyers[0].pk])

    # --- State, through the API (and the services where the API cannot: a TTL
    # shorter than its 30 s minimum, the sweep beat would run).
    skus = [f"DRILL-{name}-{uuid.uuid4().hex[:6]}" for name in ("A", "B", "C")]
    for sku, units in zip(skus, (60, 20, 10), strict=True):
        _ok(admin.post("/api/v1/products/", {"sku": sku, "name": sku}), 201)
        _ok(admin.post(f"/api/v1/products/{sku}/restock/", {"quantity": units}), 200)
    a, b, c = skus
    confirmed = _ok(buyer.post("/api/v1/reservations/", {"sku": a, "quantity": 2}), 201)
    _ok(admin.post(f"/api/v1/reservations/{confirmed['id']}/confirm/"), 200)
    released = _ok(buyer.post("/api/v1/reservations/", {"sku": a, "quantity": 1}), 201)
    _ok(buyer.post(f"/api/v1/reservations/{released['id']}/cancel/"), 200)
    expired = reservation_create(owner=buyers[0], sku=b, quantity=3, ttl_seconds=1)
    long_pending = _ok(
        buyer.post("/api/v1/reservations/", {"sku": c, "quantity": 5}), 201
    )
    time.sleep(1.1)
    assert reservations_expire() == 1
    pending_body = {"sku": b, "quantity": 4, "ttl_seconds": PENDING_TTL}
    key = {"Idempotency-Key": "drill-1"}
    pending = _ok(buyer.post("/api/v1/reservations/", pending_body, **key), 201)
    reservation_ids = [
        confirmed["id"],
        released["id"],
        str(expired.reservation.pk),
        long_pending["id"],
        pending["id"],
    ]
    before_api = _api_state(buyer, reservation_ids)
    before_products_staff = _ok(admin.get("/api/v1/products/?limit=100"), 200)
    before = _table_checksums()
    rows = sum(count for count, _ in before.values())
    assert before["inventory_reservation"][0] == 5
    kinds = sorted(StockMovement.objects.values_list("kind", flat=True))
    assert kinds == sorted(
        ["restock"] * 3 + ["reserve"] * 5 + ["confirm", "cancel", "expire"]
    )

    # --- Back up: what an operator runs (custom format, one consistent snapshot).
    name = database_name()
    dump = tmp_path / "inventory.dump"
    started = time.monotonic()
    run(
        [str(bindir / "pg_dump"), *_libpq_args(), "--format=custom",
         "--file", str(dump), "--dbname", name],
        check=True,
    )  # fmt: skip
    backup_seconds = time.monotonic() - started

    # --- Disaster: the application stops, the database and Redis are gone.
    processes.stop_group(web.process)
    connections.close_all()
    admin_db = admin_connection()
    with admin_db.cursor() as cursor:
        cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    # The run's Redis database (REDIS_URL's), not FLUSHALL: a Redis handed to
    # the run may hold other databases. The application has nothing outside it.
    redis_client.flushdb()
    assert redis_client.dbsize() == 0

    # --- Restore into a new, empty database of the same name.
    started = time.monotonic()
    with admin_db.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin_db.close()
    run(
        [str(bindir / "pg_restore"), *_libpq_args(), "--dbname", name,
         "--exit-on-error", "--no-owner", str(dump)],
        check=True,
    )  # fmt: skip
    restore_seconds = time.monotonic() - started
    assert _table_checksums() == before

    # --- Resync Redis, as a process, as an operator runs it.
    started = time.monotonic()
    result = run_python(["manage.py", "restore_resync"], env=production_environ())
    resync_seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    said = [line for line in result.stdout.splitlines() if not line.startswith("{")]
    assert said[0] == (
        "gate counters: 0 removed, 3 re-derived from PostgreSQL; 0 of 3 active "
        "products without one"
    ), said
    assert said[2] == "reservations past their deadline, expired now: 0", said
    assert said[3].startswith("reservations pending: 2 (9 units), next deadline")
    # Nothing in the database changed, and the counters are the database's figures.
    assert _table_checksums() == before
    for stock in Stock.objects.select_related("product"):
        assert redis_client.get(gate.gate_key(stock.product.sku)) == str(
            stock.available
        )

    # --- The API answers as before; a retry of a key used before the backup is
    # answered from the restored row.
    web = start_gunicorn(**LIMITS)
    admin = Api(web.base_url, tokens[staff.pk])
    buyer = Api(web.base_url, tokens[buyers[0].pk])
    assert _api_state(buyer, reservation_ids) == before_api
    assert _ok(admin.get("/api/v1/products/?limit=100"), 200) == before_products_staff
    replay = buyer.post("/api/v1/reservations/", pending_body, **key)
    assert _ok(replay, 201) == before_api["reservations"][pending["id"]]
    assert replay.headers["Idempotent-Replayed"] == "true"

    # --- No unit sold twice: hammer A to sold-out from three owners at once.
    available = Stock.objects.get(product__sku=a).available
    assert available == 60 - 2  # 2 confirmed; the cancelled unit came back
    clients = [Api(web.base_url, tokens[u.pk]) for u in buyers]

    def buy(index: int) -> int:
        api = clients[index % len(clients)]
        taken = 0
        while True:
            answer = api.post("/api/v1/reservations/", {"sku": a, "quantity": 1})
            if answer.status_code == 409:
                assert answer.json()["error"]["code"] == "insufficient_stock"
                return taken
            _ok(answer, 201)
            taken += 1

    with ThreadPoolExecutor(HAMMER_THREADS) as pool:
        taken = sum(pool.map(buy, range(HAMMER_THREADS)))
    assert taken == available
    stock = Stock.objects.get(product__sku=a)
    assert (stock.on_hand, stock.reserved) == (58, 58)
    assert redis_client.get(gate.gate_key(a)) == "0"
    for stock in Stock.objects.select_related("product"):
        moves = StockMovement.objects.filter(product=stock.product)
        assert sum(m.on_hand_delta for m in moves) == stock.on_hand
        assert sum(m.reserved_delta for m in moves) == stock.reserved

    # --- The reservation pending at backup time is released at its deadline, by
    # the sweep beat runs every minute (nothing of it lived in Redis).
    row = Reservation.objects.get(pk=pending["id"])
    wait = (row.expires_at - _database_now()).total_seconds()
    assert wait > 1, "the drill outran the pending reservation's TTL"
    time.sleep(wait - 1)
    assert reservations_expire() == 0  # not early
    row.refresh_from_db()
    assert row.status == Reservation.Status.ACTIVE
    counter_before = int(redis_client.get(gate.gate_key(b)))
    time.sleep(max(0.0, (row.expires_at - _database_now()).total_seconds()) + 0.2)
    assert reservations_expire() == 1
    row.refresh_from_db()
    assert row.status == Reservation.Status.EXPIRED
    assert int(redis_client.get(gate.gate_key(b))) == counter_before + 4

    print(
        f"\nrestore drill: {rows} rows in {len(before)} tables, dump "
        f"{dump.stat().st_size} bytes; backup {backup_seconds:.2f} s, restore "
        f"{restore_seconds:.2f} s, resync {resync_seconds:.2f} s; drill "
        f"{time.monotonic() - drill_started:.1f} s"
    )
