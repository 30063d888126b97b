"""Startup validation: every problem named at once, exit 1, no traceback."""

from __future__ import annotations

import re

import pytest

from runtime.env import REGISTRY, ConfigError, load, parse_bool, parse_value
from tests.support.env import PRODUCTION_ENV, UNREACHED_REDIS_URL, clean_environ
from tests.support.processes import run_python

GOOD = {
    **PRODUCTION_ENV,
    "DATABASE_URL": "postgres://app:pw@db.internal:5432/app",
    "REDIS_URL": UNREACHED_REDIS_URL,
}


def check(env: dict[str, str]):
    """Run Django's check command in a fresh process with exactly this environment."""
    return run_python(["manage.py", "check"], env=clean_environ(**env))


def test_good_production_environment_starts() -> None:
    result = check(GOOD)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    "missing",
    ["DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "CORS_ALLOWED_ORIGINS", "DATABASE_URL"],
)
def test_each_required_variable_missing_is_named(missing: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != missing}
    result = check(env)
    assert result.returncode == 1
    assert f"  - {missing} is missing" in result.stderr
    assert "Invalid configuration: 1 problem " in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DJANGO_SECRET_KEY", "x" * 49, "is 49 characters long, at least 50 needed"),
        ("DJANGO_SECRET_KEY", "change-me", "is a known placeholder"),
        ("DJANGO_SECRET_KEY", "dev-insecure-key", "is a known placeholder"),
        # The project's own development key (DEBUG's default) is no secret either.
        (
            "DJANGO_SECRET_KEY",
            REGISTRY["DJANGO_SECRET_KEY"].debug_default,
            "is a known placeholder",
        ),
        ("ALLOWED_HOSTS", "api.example.com,*", "contains '*'"),
        ("CORS_ALLOWED_ORIGINS", "*", "contains '*'"),
        ("CORS_ALLOWED_ORIGINS", "app.example.com", "is not an origin"),
        ("DATABASE_URL", "postgres://db.internal:notaport/app", "is not a valid URL"),
        ("DATABASE_URL", "mysql://db.internal/app", "has scheme 'mysql'"),
        ("DATABASE_URL", "postgres://db.internal:5432", "names no database"),
        ("DATABASE_URL", "sqlite:///tmp/db.sqlite3", "is SQLite"),
        ("REDIS_URL", "http://cache:6379", "has scheme 'http'"),
        ("DEBUG", "maybe", "'maybe' is not a boolean"),
        ("SECURE_SSL_REDIRECT", "enabled", "'enabled' is not a boolean"),
        ("PORT", "eighty", "'eighty' is not an integer"),
        ("PORT", "70000", "70000 is above the maximum 65535"),
        ("GUNICORN_WORKER_CLASS", "sync", "'sync' is not one of gthread, uvicorn"),
        ("SENTRY_TRACES_SAMPLE_RATE", "1.5", "1.5 is above the maximum 1"),
        ("LOG_FORMAT", "xml", "'xml' is not one of json, console"),
    ],
)
def test_bad_value_is_named_with_reason(name: str, value: str, message: str) -> None:
    result = check({**GOOD, name: value})
    assert result.returncode == 1
    assert f"  - {name} " in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_all_problems_reported_in_one_run() -> None:
    result = check({"SECURE_HSTS_SECONDS": "-1", "GUNICORN_THREADS": "lots"})
    assert result.returncode == 1
    assert "Invalid configuration: 7 problems" in result.stderr
    for name in (
        "DJANGO_SECRET_KEY",
        "ALLOWED_HOSTS",
        "CORS_ALLOWED_ORIGINS",
        "DATABASE_URL",
        "REDIS_URL",
        "SECURE_HSTS_SECONDS",
        "GUNICORN_THREADS",
    ):
        assert f"  - {name} " in result.stderr
    assert "Traceback" not in result.stderr


def test_no_database_names_both_forms_and_the_docs_agree() -> None:
    env = {k: v for k, v in GOOD.items() if k != "DATABASE_URL"}
    problems = [(p.name, p.message, p.expected) for p in load(env).problems]
    assert problems == [
        (
            "DATABASE_URL",
            "is missing",
            "a postgres:// URL, or POSTGRES_USER + POSTGRES_PASSWORD + POSTGRES_DB",
        )
    ]
    assert "or set POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB." in (
        REGISTRY["DATABASE_URL"].doc
    )


def test_postgres_parts_build_a_postgres_url() -> None:
    env = {k: v for k, v in GOOD.items() if k != "DATABASE_URL"}
    config = load(
        {
            **env,
            "POSTGRES_USER": "app",
            "POSTGRES_PASSWORD": "p@ss/w:rd",
            "POSTGRES_DB": "inv",
        }
    )
    assert config.problems == []
    assert config.database_url == "postgres://app:p%40ss%2Fw%3Ard@localhost:5432/inv"


def test_postgres_parts_incomplete_names_the_missing_ones() -> None:
    env = {k: v for k, v in GOOD.items() if k != "DATABASE_URL"}
    config = load({**env, "POSTGRES_USER": "app", "POSTGRES_HOST": "db"})
    assert [(p.name, p.message) for p in config.problems] == [
        ("POSTGRES_PASSWORD", "is missing"),
        ("POSTGRES_DB", "is missing"),
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("Yes", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("NO", False),
    ],
)
def test_boolean_words(raw: str, expected: bool) -> None:
    assert parse_bool(raw) is expected


def test_empty_string_counts_as_unset() -> None:
    config = load({**GOOD, "SENTRY_DSN": "", "PORT": " "})
    assert config.problems == []
    assert config["PORT"] == 5000
    assert config["SENTRY_DSN"] is None


def test_list_values_are_trimmed() -> None:
    value = parse_value(REGISTRY["ALLOWED_HOSTS"], " a.example.com , b.example.com,, ")
    assert value == ["a.example.com", "b.example.com"]


def test_check_rejects_unknown_variable_lookup() -> None:
    with pytest.raises(
        KeyError, match="NOT_A_VARIABLE is not in the variable registry"
    ):
        load(GOOD).get("NOT_A_VARIABLE")


def test_secret_key_check_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_value(REGISTRY["DJANGO_SECRET_KEY"], "secret")


def test_debug_alone_runs_on_embedded_defaults() -> None:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s;"
        "print(json.dumps([s.DATABASES['default']['ENGINE'],"
        " s.CACHES['default']['BACKEND'], s.CELERY_TASK_ALWAYS_EAGER, s.DEBUG]))"
    )
    env = clean_environ(DEBUG="true", DJANGO_SETTINGS_MODULE="config.settings")
    result = run_python(["-c", code], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        '["django.db.backends.sqlite3", '
        '"django.core.cache.backends.locmem.LocMemCache", true, true]'
    )


def test_env_module_validates_from_the_command_line() -> None:
    ok = run_python(["-m", "runtime.env"], env=clean_environ(**GOOD))
    assert (ok.returncode, ok.stdout.strip()) == (0, "Configuration OK")
    bad = run_python(["-m", "runtime.env"], env=clean_environ())
    assert bad.returncode == 1
    assert "Invalid configuration: 5 problems" in bad.stderr


@pytest.mark.parametrize(
    "password",
    ["Zq7wK#Vb3xLm", "Zq7wK/Vb3xLm", "Zq7wK?Vb3xLm", "4821#Vb3xLm", "7391/Vb3xLm"],
)
def test_database_url_error_never_prints_the_password(password: str) -> None:
    """A password holding '#', '/' or '?' (not percent-encoded) is refused, and the
    configuration error prints no piece of it."""
    url = f"postgres://app:{password}@db.internal:5432/app"
    result = check({**GOOD, "DATABASE_URL": url})
    assert result.returncode == 1, result.stdout
    output = result.stderr + result.stdout
    for piece in re.split(r"[#/?]", password):
        assert piece not in output, f"{piece!r} printed"
    assert "  - DATABASE_URL is not a valid URL (" in result.stderr
    assert "percent-encode '#', '/', '?', '@' and ':'" in result.stderr


def test_task_time_limits_default_to_an_ordered_few_minutes() -> None:
    """A lost worker's task comes back within minutes: soft < hard < visibility
    timeout <= 10 minutes, and the defaults pass the registry's own rule."""
    soft = REGISTRY["CELERY_TASK_SOFT_TIME_LIMIT"].default
    hard = REGISTRY["CELERY_TASK_TIME_LIMIT"].default
    visibility = REGISTRY["CELERY_VISIBILITY_TIMEOUT"].default
    assert (soft, hard, visibility) == (120, 180, 300)
    assert soft < hard < visibility <= 600
    assert load(clean_environ(**GOOD)).problems == []


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"CELERY_TASK_SOFT_TIME_LIMIT": "180"},
            "  - CELERY_TASK_SOFT_TIME_LIMIT (180) is not below "
            "CELERY_TASK_TIME_LIMIT (180); expected a soft limit below the hard one",
        ),
        (
            {"CELERY_TASK_TIME_LIMIT": "400"},
            "  - CELERY_VISIBILITY_TIMEOUT (300) is not above "
            "CELERY_TASK_TIME_LIMIT (400); expected a value above the hard time limit",
        ),
        (
            {"CELERY_VISIBILITY_TIMEOUT": "150"},
            "  - CELERY_VISIBILITY_TIMEOUT (150) is not above "
            "CELERY_TASK_TIME_LIMIT (180); expected a value above the hard time limit",
        ),
    ],
)
def test_task_time_rule_names_the_variables_of_a_bad_combination(
    env: dict[str, str], line: str
) -> None:
    result = check({**GOOD, **env})
    assert result.returncode == 1
    assert line in result.stderr
    assert "Invalid configuration: 1 problem " in result.stderr


def test_tasks_use_no_delay_the_visibility_rule_ignores() -> None:
    """A countdown, ETA or retry delay keeps a message unacknowledged in Redis: one
    longer than the visibility timeout is delivered twice. The registry's rule knows
    no such delay because the tasks use none; adding one must extend the rule."""
    from pathlib import Path

    apps = Path(__file__).resolve().parents[2] / "apps"
    words = ("countdown", "eta=", "retry_backoff", "default_retry_delay", ".retry(")
    found = [
        f"{path.relative_to(apps)}: {word}"
        for path in sorted(apps.rglob("*.py"))
        for word in words
        if word in path.read_text()
    ]
    assert found == []
