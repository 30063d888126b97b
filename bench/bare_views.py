"""Baseline views: the same JSON as /health/, the product detail by raw cursor, and
a reservation as the same SQL transaction and Redis take written by hand."""

import hashlib
import json
import os
import uuid
from datetime import timedelta

import redis

# The project's own Lua take and key format, so that Redis does the same work.
from apps.inventory.gate import _TAKE, gate_key
from django.db import connection, transaction
from django.http import Http404, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

GATE = redis.Redis.from_url(os.environ["REDIS_URL"])
OWNER_LOCK_NAMESPACE = 0x52455356  # the project's "RESV"
OWNER_WINDOW_SECONDS = 3600
# Token -> user id, looked up once per process (the project caches tokens too).
TOKENS: dict[str, int] = {}


def health(request):
    return JsonResponse({"status": "ok"})


def product(request, sku):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.sku, p.name, p.active, s.on_hand, s.reserved "
            "FROM inventory_product p JOIN inventory_stock s ON s.product_id = p.id "
            "WHERE p.sku = %s AND p.active",
            [sku],
        )
        row = cursor.fetchone()
    if row is None:
        raise Http404
    sku, name, active, on_hand, reserved = row
    return JsonResponse(
        {
            "sku": sku,
            "name": name,
            "active": active,
            "on_hand": on_hand,
            "reserved": reserved,
            "available": on_hand - reserved,
        }
    )


def _owner(request) -> int | None:
    key = request.headers.get("Authorization", "").removeprefix("Token ")
    if key not in TOKENS:
        with connection.cursor() as cursor:
            cursor.execute("SELECT user_id FROM authtoken_token WHERE key = %s", [key])
            row = cursor.fetchone()
        if row is None:
            return None
        TOKENS[key] = row[0]
    return TOKENS[key]


@csrf_exempt
def reserve(request):
    """POST a reservation: the statements the project runs for an accepted one with
    an Idempotency-Key and the gate on, in the same order, nothing else."""
    owner = _owner(request)
    if owner is None:
        return JsonResponse({"detail": "unauthorized"}, status=401)
    body = json.loads(request.body)
    sku, quantity = body["sku"], int(body["quantity"])
    ttl = int(body.get("ttl_seconds", 900))
    key = request.headers["Idempotency-Key"]
    fingerprint = hashlib.sha256(
        json.dumps(
            {"sku": sku, "quantity": quantity, "ttl_seconds": ttl}, sort_keys=True
        ).encode()
    ).hexdigest()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"reservation-idempotency:{owner}:{key}"],
        )
        cursor.execute(
            "SELECT id FROM inventory_reservation WHERE owner_id = %s "
            "AND idempotency_key = %s",
            [owner, key],
        )
        if cursor.fetchone() is not None:
            return JsonResponse({"detail": "replayed"}, status=200)
        gate = gate_key(sku)
        current = GATE.get(gate)
        if current is None or int(current) < quantity:
            return JsonResponse({"detail": "insufficient stock"}, status=409)
        status, _ = GATE.eval(_TAKE, 1, gate, quantity)
        if status != 1:
            return JsonResponse({"detail": "insufficient stock"}, status=409)
        cursor.execute(
            "SELECT id FROM inventory_product WHERE sku = %s AND active", [sku]
        )
        (product_id,) = cursor.fetchone()
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s), now()",
            [OWNER_LOCK_NAMESPACE, owner & 0x7FFFFFFF],
        )
        now = cursor.fetchone()[1]
        cursor.execute(
            "SELECT sum(quantity) FILTER (WHERE status = 'active' AND expires_at > "
            "now()), sum(quantity) FILTER (WHERE created_at >= now() - %s) "
            "FROM inventory_reservation WHERE owner_id = %s AND created_at >= "
            "now() - %s",
            [
                timedelta(seconds=OWNER_WINDOW_SECONDS),
                owner,
                timedelta(seconds=OWNER_WINDOW_SECONDS),
            ],
        )
        cursor.fetchone()
        reservation = uuid.uuid4()
        expires_at = now + timedelta(seconds=ttl)
        cursor.execute(
            "INSERT INTO inventory_reservation (id, product_id, owner_id, quantity, "
            "status, expires_at, idempotency_key, request_fingerprint, created_at, "
            "updated_at) VALUES (%s, %s, %s, %s, 'active', %s, %s, %s, now(), now())",
            [reservation, product_id, owner, quantity, expires_at, key, fingerprint],
        )
        cursor.execute(
            "INSERT INTO inventory_stockmovement (product_id, kind, quantity, "
            "on_hand_delta, reserved_delta, reservation_id, actor_id, created_at) "
            "VALUES (%s, 'reserve', %s, 0, %s, %s, %s, now())",
            [product_id, quantity, quantity, reservation, owner],
        )
        cursor.execute(
            "UPDATE inventory_stock SET reserved = reserved + %s "
            "WHERE product_id = %s AND on_hand >= reserved + %s",
            [quantity, product_id, quantity],
        )
    return JsonResponse(
        {
            "id": str(reservation),
            "sku": sku,
            "quantity": quantity,
            "status": "active",
            "expires_at": expires_at.isoformat(),
        },
        status=201,
    )


urlpatterns = [
    path("health/", health),
    path("api/v1/products/<str:sku>/", product),
    path("api/v1/reservations/", reserve),
]
