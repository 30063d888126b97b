"""Models and migrations agree: a model change without its migration fails CI."""

from __future__ import annotations

from tests.support.env import PRODUCTION_ENV, UNREACHED_REDIS_URL, clean_environ
from tests.support.processes import run_python


def test_no_missing_migrations() -> None:
    env = clean_environ(
        **PRODUCTION_ENV,
        DATABASE_URL="postgres://a:b@db.invalid/app",
        REDIS_URL=UNREACHED_REDIS_URL,
    )
    result = run_python(
        ["manage.py", "makemigrations", "--check", "--dry-run"], env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "No changes detected"
