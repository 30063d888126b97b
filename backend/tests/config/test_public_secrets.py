"""Secrets published in the project's own files are refused in production.

Anyone can read .env.example, the guide and the manifests, so a deployment that
copied one of their secret values has none. They stay usable only while every
ALLOWED_HOSTS entry is local: `cp .env.example .env && docker compose up` on a
laptop, as the README says.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from runtime.env import LOCAL_HOSTS, PUBLIC_SECRETS, REGISTRY, load
from tests.support.env import PRODUCTION_ENV, UNREACHED_REDIS_URL

ROOT = Path(__file__).resolve().parents[3]
SENSITIVE = sorted(name for name, var in REGISTRY.items() if var.sensitive)
GOOD = {
    **PRODUCTION_ENV,
    "DATABASE_URL": "postgres://app:Zq7wKVb3xLm@db.internal:5432/app",
    "REDIS_URL": UNREACHED_REDIS_URL,
}
REFUSED_VALUE = (
    "is a value published in this project's files (.env.example, the guide, the "
    "manifests), a placeholder, not a secret"
)
REFUSED_PASSWORD = (
    "has a password published in this project's files (.env.example, the guide, "
    "the manifests), a placeholder, not a secret"
)
EXPECTED = (
    "a value of your own (generate it), or every ALLOWED_HOSTS entry local "
    "(127.0.0.1, ::1, localhost)"
)


def shipped_files() -> list[Path]:
    """What an operator reads or deploys: documents, Compose, Railway, deploy/."""
    files = [
        ROOT / name
        for name in (
            ".env.example",
            "README.md",
            "DEPLOYMENT_GUIDE.md",
            "ENVIRONMENT_VARIABLES.md",
            "PRODUCTION_READINESS_CHECKLIST.md",
            "docker-compose.yml",
            "railway.json",
            "Dockerfile",
        )
    ]
    files += sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file())
    return files


# A value ends at whitespace, a quote, a backtick, a table bar or a backslash.
VALUE = r"""(['"]?)([^\s'"`|\\]*)"""
# A URL's password: scheme://[user]:password@
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/@'\"`:]*:([^\s/@'\"`]+)@")


def secret_looking_values(text: str) -> set[str]:
    """Literal values given to a sensitive variable, and passwords of URLs."""
    found: set[str] = set()
    for name in SENSITIVE:
        # NAME=value (shell, .env, --set, --from-literal), NAME: value (YAML).
        for _, value in re.findall(rf"(?<![A-Z_]){name}(?:=|: ){VALUE}", text):
            found.add(value)
        # ${NAME:-default} (Compose interpolation): the default is a value too.
        found.update(re.findall(rf"\$\{{{name}:?-([^}}]*)\}}", text))
    found.update(URL_PASSWORD.findall(text))
    # Shell or Compose expansions and empty values hold no secret of their own.
    return {
        value
        for value in found
        if value and not value.startswith(("$", "{", "<a ", "/run/secrets/"))
    }


def test_every_published_secret_is_in_the_refused_list() -> None:
    """The list cannot drift: a secret-looking value added to a shipped file
    without adding it to runtime/env/schema.py's PUBLIC_SECRETS fails here."""
    unlisted = {}
    for path in shipped_files():
        # A URL is checked by its password (found on its own), not as a whole.
        missing = sorted(
            value
            for value in secret_looking_values(path.read_text())
            if not re.match(r"[a-z]+://", value) and value not in PUBLIC_SECRETS
        )
        if missing:
            unlisted[str(path.relative_to(ROOT))] = missing
    assert unlisted == {}, "add these to PUBLIC_SECRETS in runtime/env/schema.py"


def test_the_scan_finds_what_the_files_publish() -> None:
    """The scan itself works: each listed value is found in some shipped file."""
    published: set[str] = set()
    for path in shipped_files():
        published |= secret_looking_values(path.read_text())
    assert set(PUBLIC_SECRETS) <= published, set(PUBLIC_SECRETS) - published


# Each published value in the variable it is published for.
COMPOSE_SECRET_KEY = "compose-local-only-0f9d2c7b1e8a4d6f93b5c0e2a7d4f1b8c6e3a9d"
REFUSED = [
    ("DJANGO_SECRET_KEY", COMPOSE_SECRET_KEY, REFUSED_VALUE),
    ("DJANGO_SECRET_KEY_FALLBACKS", COMPOSE_SECRET_KEY, REFUSED_VALUE),
    ("METRICS_TOKEN", "compose-local-metrics-token-not-secret", REFUSED_VALUE),
    ("POSTGRES_PASSWORD", "app-local-password", REFUSED_VALUE),
    ("POSTGRES_PASSWORD", "app", REFUSED_VALUE),
    ("DATABASE_URL", "postgres://app:app@db:5432/app", REFUSED_PASSWORD),
    (
        "DATABASE_URL",
        "postgres://inventory:URL-ENCODED-PASSWORD@db.internal:5432/inventory",
        REFUSED_PASSWORD,
    ),
    (
        "DATABASE_DIRECT_URL",
        "postgres://app:<password>@db:5432/app",
        REFUSED_PASSWORD,
    ),
    ("REDIS_URL", "rediss://:AUTH-TOKEN@cache.internal:6379/0", REFUSED_PASSWORD),
    ("REDIS_URL", "rediss://:TOKEN@host:6379/0", REFUSED_PASSWORD),
    ("REDIS_CACHE_URL", "redis://:password@mymaster/0", REFUSED_PASSWORD),
    ("METRICS_TOKEN_PREVIOUS", "<old>", REFUSED_VALUE),
    ("REDIS_SENTINEL_PASSWORD", "<new>", REFUSED_VALUE),
]


def test_every_public_value_has_a_refusal_test() -> None:
    tested = {
        unquote(urlsplit(value).password or "") if "://" in value else value
        for _, value, _ in REFUSED
    }
    assert set(PUBLIC_SECRETS) <= tested, set(PUBLIC_SECRETS) - tested


def _parts(name: str, value: str) -> dict[str, str]:
    """The environment with `value` in `name` and whatever it needs beside it."""
    env = {**GOOD, name: value}
    if name == "METRICS_TOKEN_PREVIOUS":
        env["METRICS_TOKEN"] = "metrics-of-our-own-" + "m" * 12
    if name.startswith("POSTGRES_"):
        env.pop("DATABASE_URL")
        env = {"POSTGRES_USER": "app", "POSTGRES_DB": "app", **env}
        env.setdefault("POSTGRES_PASSWORD", "Zq7wKVb3xLm-own")
    return env


@pytest.mark.parametrize(("name", "value", "message"), REFUSED)
def test_published_value_is_refused_with_a_real_host(
    name: str, value: str, message: str
) -> None:
    config = load(_parts(name, value))
    assert [(p.name, p.message, p.expected) for p in config.problems] == [
        (name, message, EXPECTED)
    ]


@pytest.mark.parametrize(("name", "value", "message"), REFUSED)
def test_published_value_is_accepted_while_every_host_is_local(
    name: str, value: str, message: str
) -> None:
    env = {**_parts(name, value), "ALLOWED_HOSTS": ",".join(sorted(LOCAL_HOSTS))}
    assert load(env).problems == []


def test_a_public_value_read_from_a_file_is_refused_too(tmp_path) -> None:
    secret = tmp_path / "metrics_token"
    secret.write_text("compose-local-metrics-token-not-secret\n")
    config = load({**GOOD, "METRICS_TOKEN_FILE": str(secret)})
    assert [(p.name, p.message) for p in config.problems] == [
        ("METRICS_TOKEN", REFUSED_VALUE)
    ]


def test_one_real_host_among_local_ones_refuses() -> None:
    env = {
        **GOOD,
        "ALLOWED_HOSTS": "localhost,127.0.0.1,inventory.example.com",
        "METRICS_TOKEN": "compose-local-metrics-token-not-secret",
    }
    assert [p.name for p in load(env).problems] == ["METRICS_TOKEN"]
