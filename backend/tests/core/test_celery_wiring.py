"""How the Celery app is wired: no cycle back into it, one heartbeat file name."""

from __future__ import annotations

import re
from pathlib import Path

from apps.core.worker.liveness.wiring import heartbeat_touch
from runtime import healthcheck

APPS = Path(__file__).resolve().parents[2] / "apps"


def test_no_app_module_imports_the_celery_app_back() -> None:
    # config/celery.py imports apps.core's hook modules; an import back would be a
    # cycle (the app is reached as celery.app.default_app instead). config/__init__.py
    # loads it with the settings, so not even AppConfig.ready needs to.
    importers = sorted(
        str(path.relative_to(APPS))
        for path in APPS.rglob("*.py")
        if re.search(
            r"^\s*(from config\.celery |import config\.celery)", path.read_text(), re.M
        )
    )
    assert importers == []


def test_the_probe_reads_the_heartbeat_the_worker_writes(
    tmp_path, settings, monkeypatch, capsys
) -> None:
    settings.HEARTBEAT_DIR = str(tmp_path)
    heartbeat_touch("worker", "canary from celery")
    monkeypatch.setenv("HEARTBEAT_DIR", str(tmp_path))
    monkeypatch.setenv("APP_ROLE", "worker")

    assert healthcheck.main() == 0
    assert capsys.readouterr().out == (
        f"healthy (worker): heartbeat {tmp_path}/celery-worker.heartbeat is 0s old: "
        "canary from celery\n"
    )


def test_apps_reach_the_project_app_even_after_another_app_is_created() -> None:
    from celery import Celery, current_app
    from celery.app import default_app

    from config.celery import app

    previous = current_app._get_current_object()
    Celery(broker="memory://")  # a sender of its own, as some tests make
    try:
        assert current_app.main != "backend"
        assert default_app._get_current_object() is app
    finally:
        previous.set_current()
