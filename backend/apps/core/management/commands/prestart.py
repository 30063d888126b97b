"""Everything the entrypoint does before it execs the role, in one Python process.

Each Python start costs ~0.4 s of a container's cold start, so the steps share one:
record the role, wait for dependencies, handle migrations, prepare the metrics
directory. The shell assignments the role's process needs go to `--exports-fd`
(the entrypoint evals them); stdout stays the log stream.

The entrypoint runs this module directly (`python -m
apps.core.management.commands.prestart ROLE`), not through manage.py: manage.py
loads every app (~1 s) before any command, and a web container that does not
migrate only needs the settings and two connections (see `main`).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.core.db.budget import connection_budget_compute
from apps.core.management.commands import wait_for_dependencies
from runtime.files import role_file

logger = logging.getLogger(__name__)

ROLES = ("web", "worker", "beat", "migrate")


class Command(BaseCommand):
    help = "Entrypoint steps 2-3 for ROLE: wait, migrate or wait for migrations."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("role", choices=ROLES)
        parser.add_argument(
            "--exports-fd",
            type=int,
            default=None,
            help="file descriptor for the shell assignments (default: stdout)",
        )

    def handle(self, *args: Any, role: str, exports_fd: int | None, **options):
        runtime_dir = Path(settings.HEARTBEAT_DIR)
        self._record_role(runtime_dir, role)

        self.stderr.write("waiting for dependencies")
        # Commands passed as objects: call_command then needs no app registry.
        with _queries_before_the_apps_load():
            call_command(
                wait_for_dependencies.Command(),
                redis="optional" if role == "web" else "required",
            )

        if role in {"worker", "beat"}:
            # Their Redis answered the wait: one more command says whether it can
            # evict the queue or RedBeat's lock (web does not wait for Redis).
            self._report_redis_eviction()

        if needs_app_registry(role):
            import django

            django.setup()
        # Imported here: the migration machinery costs a web start that skips it.
        if role == "migrate" or (role == "web" and settings.RUN_MIGRATIONS):
            from apps.core.management.commands import migrate_locked

            call_command(migrate_locked.Command())
        elif role in {"worker", "beat"}:
            from apps.core.management.commands import wait_for_migrations

            call_command(wait_for_migrations.Command())

        if role in {"web", "worker"}:
            with _queries_before_the_apps_load():
                self._report_connection_budget(role)

        exports: dict[str, str] = {}
        if role in {"web", "worker"}:
            # prometheus_client reads this at import, and sums every file in it:
            # the files of a previous run must go.
            metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(
                runtime_dir / f"prometheus-{role}"
            )
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.makedirs(metrics_dir, exist_ok=True)
            exports["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        text = "".join(
            f"export {name}={shlex.quote(value)}\n" for name, value in exports.items()
        )
        if role == "beat":
            # A shell variable for the entrypoint's command line, not an environment
            # variable.
            schedule = runtime_dir / "celerybeat-schedule"
            text += f"beat_schedule={shlex.quote(str(schedule))}\n"
        if exports_fd is None:
            self.stdout.write(text, ending="")
        else:
            with os.fdopen(exports_fd, "w") as stream:
                stream.write(text)

    def _record_role(self, runtime_dir: Path, role: str) -> None:
        """Write the role where probes find it; say plainly when the dir is unusable."""
        try:
            runtime_dir.mkdir(parents=True, exist_ok=True)
            role_file(directory=runtime_dir).write_text(f"{role}\n")
        except OSError as exc:
            raise CommandError(
                f"HEARTBEAT_DIR={runtime_dir} is not writable by uid {os.getuid()} "
                f"({exc.strerror}): mount a writable volume there (the image declares "
                "its default as a VOLUME, so platforms give it the image's mode 1777)"
            ) from None

    def _report_redis_eviction(self) -> None:
        """Log the broker Redis's maxmemory-policy; warn when it can evict.

        A warning, not a refusal to start (the deploy check core.W007 says the
        same): a managed Redis's policy is the platform's, and a worker that will
        not start loses more than one that may lose a key under memory pressure.
        """
        from apps.core.redis.roles import eviction_policies_read

        for policy in eviction_policies_read(
            broker_url=settings.BROKER_URL_OWN,
            redis_url=settings.REDIS_URL,
            timeout=settings.REDIS_SOCKET_TIMEOUT,
            sentinel=settings.REDIS_SENTINEL,
        ):
            if policy.can_evict:
                logger.warning("%s (check core.W007)", policy.describe())
            elif policy.policy is None:
                logger.info("%s (check core.I008)", policy.describe())
            else:
                logger.info("%s", policy.describe())

    def _report_connection_budget(self, role: str) -> None:
        """Log the role's PostgreSQL connection budget; warn when it is exceeded.

        A warning, not a refusal to start: replicas and the server's limit change
        independently, and a web role that will not start is worse than one that
        may hit the limit under peak load.
        """
        budget = connection_budget_compute(role=role, env=settings.ENV)
        if budget is None:
            return
        if budget.exceeded:
            remedy = (
                budget.POOLED_REMEDY
                if budget.pooled
                else "Lower GUNICORN_WORKERS/GUNICORN_THREADS or "
                "CELERY_WORKER_CONCURRENCY or DB_EXPECTED_REPLICAS, or raise "
                "max_connections"
            )
            logger.warning(
                "PostgreSQL connection budget exceeded (check core.W006): %s. %s.",
                budget.describe(),
                remedy,
            )
        else:
            logger.info("PostgreSQL connection budget: %s", budget.describe())


@contextmanager
def _queries_before_the_apps_load() -> Iterator[None]:
    """Silence Django's warning about queries made before the apps are loaded.

    It is meant for code that queries at import; here the queries are prestart's
    own checks, made before the registry on purpose (see `main`).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "Accessing the database during app initialization"
        )
        yield


def needs_app_registry(role: str) -> bool:
    """Migrating, or checking for unapplied migrations, loads every app's models."""
    return role in {"migrate", "worker", "beat"} or (
        role == "web" and settings.RUN_MIGRATIONS
    )


def main(argv: list[str]) -> None:
    """The entrypoint's way in: settings only, the app registry when a role needs it.

    Settings are validated on import (runtime/env/ exits naming every bad
    variable), exactly as under manage.py. The entrypoint exports
    DJANGO_SETTINGS_MODULE, as manage.py and config/wsgi.py set it for theirs.
    """
    settings.INSTALLED_APPS  # noqa: B018 - imports and validates the settings
    # --skip-checks: Django's system checks inspect the code (models, URLs), which
    # the build already checked (`manage.py check` in the tests); they would load
    # every app. Configuration is validated above, as under manage.py.
    Command().run_from_argv(["manage.py", "prestart", *argv, "--skip-checks"])


if __name__ == "__main__":
    main(sys.argv[1:])
