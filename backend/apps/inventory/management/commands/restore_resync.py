"""Bring Redis back into agreement with a restored database:
`python manage.py restore_resync` (DEPLOYMENT_GUIDE.md, "Backup and restore").

Run it once the restore finished and before traffic returns (it is also safe under
traffic, and safe to run twice). It prints what it did, one line per step.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.drf.token_cache import token_cache_flush
from apps.inventory import gate
from apps.inventory.services import (
    inventory_gate_rebuild,
    reservations_expire,
    reservations_pending_read,
)


class Command(BaseCommand):
    help = (
        "After a database restore: re-derive the Redis gate counters from "
        "PostgreSQL, flush every web process's token cache, expire reservations "
        "already past their deadline, and report the pending ones."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not gate.gate_enabled():
            raise CommandError("REDIS_URL is not set: there is no Redis to resync.")
        try:
            rebuilt = inventory_gate_rebuild()
        except gate.GateUnavailable as exc:
            raise CommandError(f"Redis unavailable: {exc}") from exc
        self.stdout.write(
            f"gate counters: {rebuilt.removed} removed, {rebuilt.derived} re-derived "
            f"from PostgreSQL; {rebuilt.missing} of {rebuilt.active_products} "
            "active products without one"
        )
        if rebuilt.missing:
            # A reconciliation on a worker held the lock: it writes the same figures.
            self.stderr.write(
                "a reconciliation was running elsewhere; run this command again"
            )
        published = token_cache_flush()
        self.stdout.write(
            "token caches: flushed in every web process"
            if published
            else "token caches: flushed in this process only (not published: no "
            "Redis, or Redis refused; the others expire theirs within "
            "AUTH_TOKEN_CACHE_SECONDS)"
        )
        expired = reservations_expire()
        self.stdout.write(f"reservations past their deadline, expired now: {expired}")
        pending = reservations_pending_read()
        deadline = (
            pending.next_deadline.isoformat() if pending.next_deadline else "none"
        )
        self.stdout.write(
            f"reservations pending: {pending.count} ({pending.units} units), next "
            f"deadline {deadline}; beat's expiry sweep releases each at its deadline"
        )
        if rebuilt.missing:
            raise CommandError("gate counters not all re-derived")
