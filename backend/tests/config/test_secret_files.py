"""Secrets from files: every sensitive variable's *_FILE form (Compose secrets,
Kubernetes secret volumes), read once at start, problems reported with the rest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from runtime.env import REGISTRY, load
from tests.support.env import PRODUCTION_ENV, UNREACHED_REDIS_URL, clean_environ
from tests.support.net import free_port
from tests.support.processes import assert_exit, run_python

SENSITIVE = sorted(name for name, var in REGISTRY.items() if var.sensitive)
GOOD = {
    **PRODUCTION_ENV,
    "DATABASE_URL": "postgres://app:Zq7wKVb3xLm@db.internal:5432/app",
    "REDIS_URL": UNREACHED_REDIS_URL,
}
# A valid value of each sensitive variable (what its file would hold).
SAMPLES = {
    "DJANGO_SECRET_KEY": "file-" + "k7Qp" * 15,
    "DJANGO_SECRET_KEY_FALLBACKS": "old-" + "x9Tz" * 15,
    "DATABASE_URL": "postgres://app:Zq7w%23Vb3@db.internal:5432/app",
    "DATABASE_DIRECT_URL": "postgres://app:Zq7wVb3@db-direct.internal:5432/app",
    "POSTGRES_PASSWORD": "Zq7wK#Vb3xLm",
    "REDIS_URL": "rediss://:r3d1sT0ken@cache.internal:6379/0",
    "REDIS_CACHE_URL": "redis://:c4cheT0ken@cache-lru.internal:6379/0",
    "REDIS_SENTINEL_PASSWORD": "s3ntinel-pass",
    "CELERY_BROKER_URL": "redis://:br0ker@broker.internal:6379/1",
    "METRICS_TOKEN": "metrics-from-a-file-" + "m" * 12,
    "METRICS_TOKEN_PREVIOUS": "metrics-previous-" + "p" * 12,
    "SENTRY_DSN": "https://abc123@o1.ingest.sentry.io/42",
}


def test_every_secret_class_variable_is_marked_sensitive() -> None:
    assert sorted(SAMPLES) == SENSITIVE


def _with(name: str) -> dict[str, str]:
    """GOOD without `name`, plus what `name` needs beside it."""
    env = {k: v for k, v in GOOD.items() if k != name}
    if name == "POSTGRES_PASSWORD":
        env.pop("DATABASE_URL")
        env.update(POSTGRES_USER="app", POSTGRES_DB="app")
    if name == "METRICS_TOKEN_PREVIOUS":
        env["METRICS_TOKEN"] = SAMPLES["METRICS_TOKEN"]
    return env


@pytest.mark.parametrize("name", SENSITIVE)
def test_file_form_gives_the_value_without_its_trailing_newline(
    name: str, tmp_path: Path
) -> None:
    secret = tmp_path / name.lower()
    secret.write_text(SAMPLES[name] + "\n")
    from_file = load({**_with(name), f"{name}_FILE": str(secret)})
    from_env = load({**_with(name), name: SAMPLES[name]})
    assert from_file.problems == []
    assert from_file[name] == from_env[name]
    assert from_file[name] not in (None, [], "")


def test_postgres_password_from_a_file_builds_the_database_url(tmp_path) -> None:
    secret = tmp_path / "postgres_password"
    secret.write_text("Zq7wK#Vb3xLm\r\n")
    config = load(
        {
            **PRODUCTION_ENV,
            "REDIS_URL": UNREACHED_REDIS_URL,
            "POSTGRES_USER": "app",
            "POSTGRES_DB": "app",
            "POSTGRES_HOST": "db.internal",
            "POSTGRES_PASSWORD_FILE": str(secret),
        }
    )
    assert config.problems == []
    assert config.database_url == "postgres://app:Zq7wK%23Vb3xLm@db.internal:5432/app"


def test_both_forms_set_names_both(tmp_path) -> None:
    secret = tmp_path / "key"
    secret.write_text(SAMPLES["DJANGO_SECRET_KEY"])
    config = load({**GOOD, "DJANGO_SECRET_KEY_FILE": str(secret)})
    assert [(p.name, p.message, p.expected) for p in config.problems] == [
        (
            "DJANGO_SECRET_KEY_FILE",
            "and DJANGO_SECRET_KEY are both set",
            "one of the two: the value in DJANGO_SECRET_KEY, or a file holding it "
            "in DJANGO_SECRET_KEY_FILE",
        )
    ]


def test_missing_file_is_named(tmp_path) -> None:
    path = tmp_path / "absent"
    env = {k: v for k, v in GOOD.items() if k != "DJANGO_SECRET_KEY"}
    config = load({**env, "DJANGO_SECRET_KEY_FILE": str(path)})
    assert [(p.name, p.message, p.expected) for p in config.problems] == [
        (
            "DJANGO_SECRET_KEY_FILE",
            f"names {path}, which cannot be read (No such file or directory)",
            "a readable file holding the value",
        )
    ]


def test_directory_instead_of_a_file_is_named(tmp_path) -> None:
    # What a Kubernetes mount of the whole secret at the variable's path gives.
    env = {k: v for k, v in GOOD.items() if k != "REDIS_URL"}
    config = load({**env, "REDIS_URL_FILE": str(tmp_path)})
    assert [(p.name, p.message) for p in config.problems] == [
        ("REDIS_URL_FILE", f"names {tmp_path}, which cannot be read (Is a directory)")
    ]


@pytest.mark.parametrize("content", ["", "\n", "  \n\n"])
def test_empty_file_is_named(content: str, tmp_path) -> None:
    secret = tmp_path / "metrics_token"
    secret.write_text(content)
    config = load({**GOOD, "METRICS_TOKEN_FILE": str(secret)})
    assert [(p.name, p.message) for p in config.problems] == [
        ("METRICS_TOKEN_FILE", f"names {secret}, which is empty")
    ]


def test_bad_value_in_a_file_names_the_file_never_the_content(tmp_path) -> None:
    secret = tmp_path / "key"
    secret.write_text("too-short-but-secret-Zq7w\n")
    env = {k: v for k, v in GOOD.items() if k != "DJANGO_SECRET_KEY"}
    config = load({**env, "DJANGO_SECRET_KEY_FILE": str(secret)})
    assert [(p.name, p.message) for p in config.problems] == [
        (
            "DJANGO_SECRET_KEY",
            f"(read from DJANGO_SECRET_KEY_FILE={secret}) is 25 characters long, "
            "at least 50 needed",
        )
    ]


def test_file_problems_are_reported_with_every_other_problem(tmp_path) -> None:
    """One run names them all: the operator fixes the deployment in one round."""
    empty = tmp_path / "empty"
    empty.write_text("\n")
    key = tmp_path / "key"
    key.write_text(SAMPLES["DJANGO_SECRET_KEY"])
    leaked = "Zq7w-never-printed-" + "s" * 40
    wrong = tmp_path / "wrong_url"
    wrong.write_text(f"mysql://app:{leaked}@db/app\n")
    env = clean_environ(
        **{
            **GOOD,
            "DATABASE_URL": "",
            "DATABASE_URL_FILE": str(wrong),
            "DJANGO_SECRET_KEY_FILE": str(key),
            "METRICS_TOKEN_FILE": str(empty),
            "REDIS_URL": "",
            "REDIS_URL_FILE": str(tmp_path / "absent"),
            "GUNICORN_THREADS": "lots",
        }
    )
    result = run_python(["manage.py", "check"], env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Invalid configuration: 5 problems with environment variables:",
        "  - DJANGO_SECRET_KEY_FILE and DJANGO_SECRET_KEY are both set; expected one "
        "of the two: the value in DJANGO_SECRET_KEY, or a file holding it in "
        "DJANGO_SECRET_KEY_FILE",
        f"  - DATABASE_URL (read from DATABASE_URL_FILE={wrong}) has scheme "
        "'mysql', expected postgres or postgresql or sqlite; expected a URL with "
        "scheme postgres:// or postgresql:// or sqlite://",
        f"  - REDIS_URL_FILE names {tmp_path / 'absent'}, which cannot be read (No "
        "such file or directory); expected a readable file holding the value",
        "  - GUNICORN_THREADS 'lots' is not an integer; expected an integer >= 1 "
        "and <= 64",
        f"  - METRICS_TOKEN_FILE names {empty}, which is empty; expected a readable "
        "file holding the value",
        "See ENVIRONMENT_VARIABLES.md. Nothing was started.",
    ]
    assert leaked not in result.stderr + result.stdout


@pytest.mark.slow
def test_web_role_runs_on_secrets_from_files(
    start_entrypoint, production_env, tmp_path
) -> None:
    """The entrypoint's dependency wait, gunicorn's config, the app and the
    container healthcheck all read the *_FILE forms (no value in the environment)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    files = {}
    for name, value in {
        "DJANGO_SECRET_KEY": SAMPLES["DJANGO_SECRET_KEY"],
        "DATABASE_URL": production_env["DATABASE_URL"],
        "REDIS_URL": production_env["REDIS_URL"],
        "METRICS_TOKEN": SAMPLES["METRICS_TOKEN"],
    }.items():
        (secrets / name.lower()).write_text(value + "\n")
        files[f"{name}_FILE"] = str(secrets / name.lower())
    port = free_port()
    plain = {name: "" for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL")}
    process = start_entrypoint("web", PORT=str(port), **plain, **files)
    process.wait_for_line(lambda line: "Listening at" in line, 60)
    ready = requests.get(f"{process.base_url}/health/ready/", timeout=10)
    assert (ready.status_code, ready.json()["checks"]) == (
        200,
        {"database": "ok", "migrations": "ok", "redis": "ok"},
    )
    metrics = requests.get(
        f"{process.base_url}/metrics",
        headers={"Authorization": f"Bearer {SAMPLES['METRICS_TOKEN']}"},
        timeout=10,
    )
    assert metrics.status_code == 200
    output = process.output()
    assert "dependencies ready: PostgreSQL, Redis (after" in output
    health_env = {
        **os.environ,
        **production_env,
        **plain,
        **files,
        "PORT": str(port),
        "HEARTBEAT_DIR": str(tmp_path),
    }
    health = run_python(["-m", "runtime.healthcheck"], env=health_env)
    assert (health.returncode, health.stdout.strip()) == (
        0,
        f"healthy (web): GET http://127.0.0.1:{port}/health/ -> 200",
    )


@pytest.mark.slow
def test_entrypoint_refuses_an_unreadable_secret_file_before_waiting(
    start_entrypoint, tmp_path
) -> None:
    path = tmp_path / "absent"
    process = start_entrypoint(
        "web", DJANGO_SECRET_KEY="", DJANGO_SECRET_KEY_FILE=str(path)
    )
    assert_exit(
        process,
        1,
        timeout=30,
        says=[
            "Invalid configuration: 1 problem with environment variables:",
            f"  - DJANGO_SECRET_KEY_FILE names {path}, which cannot be read (No such "
            "file or directory); expected a readable file holding the value",
        ],
        never=["waiting for dependencies", "Traceback"],
    )
