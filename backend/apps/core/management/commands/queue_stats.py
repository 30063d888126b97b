"""Print the queues' backlog for a human: `python manage.py queue_stats [--json]`."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.core.worker.queues import queue_stats_read


class Command(BaseCommand):
    help = (
        "Per queue: messages waiting, age of the oldest, deliveries beyond the "
        "first, dead-lettered (failed, not re-enqueued) tasks."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help="Queue to report (repeatable); default: CELERY_WORKER_QUEUES.",
        )
        parser.add_argument("--json", action="store_true", help="One JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        queues = options["queues"] or settings.CELERY_WORKER_QUEUES
        stats = queue_stats_read(queues=queues)
        if options["json"]:
            self.stdout.write(json.dumps([asdict(s) for s in stats]))
            return
        header = f"{'queue':<24} {'waiting':>9} {'oldest(s)':>10} "
        header += f"{'redelivered':>12} {'dead':>6}"
        self.stdout.write(header)
        for s in stats:
            self.stdout.write(
                f"{s.queue:<24} {s.depth:>9} {s.oldest_age_seconds:>10.1f} "
                f"{s.redelivered:>12} {s.dead_lettered:>6}"
            )
