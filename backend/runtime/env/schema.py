"""The registry's machinery: the kinds of value, a variable's declaration, parsing
and the rules one value must meet.

The declarations themselves are data (runtime/env/variables.py); the rules between
variables and the loading are in runtime/env/loader.py. Django-free, like the whole
of runtime/.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})

# Values copied from tutorials and templates; a deployment that uses one has no secret.
PLACEHOLDER_SECRETS = frozenset(
    {
        "change-me",
        "changeme",
        "change_me",
        "dev-insecure-key",
        "secret",
        "secret-key",
        "your-secret-key",
        "your-secret-key-here",
        "django-insecure",
        "insecure",
        "replace-me",
        "please-change-me",
        "xxx",
    }
)
# Prefixes of generated development keys: Django's startproject and our own
# (DJANGO_SECRET_KEY's debug default), refused in production like any placeholder.
PLACEHOLDER_PREFIXES = ("django-insecure", "dev-insecure")
SECRET_KEY_MIN_LENGTH = 50
# Every secret value published in a file the project ships (.env.example, the guide,
# ENVIRONMENT_VARIABLES.md, docker-compose.yml, deploy/, railway files): whole values
# and the passwords of example URLs. Anyone can read them, so production refuses them
# in any sensitive variable; tests/config/test_public_secrets.py scans those files and
# fails when one holds a secret-looking value missing here.
PUBLIC_SECRETS = frozenset(
    {
        # .env.example (runtime/env/docs.py COMPOSE_VALUES): the local Compose setup.
        "compose-local-only-0f9d2c7b1e8a4d6f93b5c0e2a7d4f1b8c6e3a9d",
        "compose-local-metrics-token-not-secret",
        "app-local-password",
        # docker-compose.yml's POSTGRES_PASSWORD default, the registry's examples.
        "app",
        # Placeholders in the guide's and the registry's example URLs.
        "URL-ENCODED-PASSWORD",
        "AUTH-TOKEN",
        "TOKEN",
        "password",
        "<password>",
        # The rotation runbooks' placeholders.
        "<new>",
        "<old>",
    }
)
# The public values stay usable while every ALLOWED_HOSTS entry is one of these: a
# laptop running `cp .env.example .env && docker compose up`, reachable by nobody else.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# Roles whose process needs a broker: without one, web runs tasks inside requests
# (eager) and the worker consumes from memory://, silently nothing. migrate only
# talks to PostgreSQL.
BROKER_ROLES = ("web", "worker", "beat")
# Production needs one database: DATABASE_URL, or these three parts together.
POSTGRES_PARTS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
DATABASE_VARIABLES = ("DATABASE_URL", *POSTGRES_PARTS)
DATABASE_EXPECTED = "a postgres:// URL, or " + " + ".join(POSTGRES_PARTS)


class ConfigError(ValueError):
    """A variable's value does not meet what the registry expects."""


class Kind(enum.Enum):
    """What a variable's raw string is parsed into (and how the docs name it)."""

    STR = "str"
    # A string the docs and the development default treat as a secret.
    SECRET = "secret"  # noqa: S105 - the kind's name, not a password
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    LIST = "list"  # comma separated
    CHOICE = "choice"  # one of Var.choices
    URL = "url"  # with one of Var.schemes


@dataclass(frozen=True)
class Var:
    """One environment variable: how to parse it and what it means."""

    name: str
    kind: Kind
    group: str
    doc: str
    default: Any = None
    debug_default: Any = None
    required_in_prod: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    schemes: tuple[str, ...] = ()
    example: str | None = None
    check: Callable[[Any], None] | None = field(default=None, compare=False)
    # A secret: may come from a file (NAME_FILE, Compose secrets, Kubernetes secret
    # volumes), and a value published in the project's files is refused in
    # production unless every ALLOWED_HOSTS entry is local.
    sensitive: bool = False

    @property
    def file_name(self) -> str:
        """The variable naming a file that holds this one's value."""
        return f"{self.name}_FILE"

    def expected(self) -> str:
        """Describe in words what a valid value looks like."""
        if self.kind is Kind.BOOL:
            return "one of true/false/1/0/yes/no"
        if self.kind in {Kind.INT, Kind.FLOAT}:
            bounds = []
            if self.minimum is not None:
                bounds.append(f">= {self.minimum:g}")
            if self.maximum is not None:
                bounds.append(f"<= {self.maximum:g}")
            noun = "an integer" if self.kind is Kind.INT else "a number"
            return f"{noun} {' and '.join(bounds)}".strip()
        if self.kind is Kind.CHOICE:
            return "one of " + "/".join(self.choices)
        if self.kind is Kind.LIST:
            return "a comma-separated list"
        if self.kind is Kind.URL:
            return "a URL with scheme " + " or ".join(f"{s}://" for s in self.schemes)
        if self.kind is Kind.SECRET and self.name == "DJANGO_SECRET_KEY":
            return (
                f"a random string of at least {SECRET_KEY_MIN_LENGTH} characters, "
                "not a placeholder"
            )
        return "a string"


def check_secret_key(value: str) -> None:
    """Refuse a placeholder or development key, and one too short to be secret.

    Also the deploy check's rule (core.E001, apps/core/checks.py).
    """
    word = value.strip().lower()
    if word in PLACEHOLDER_SECRETS or word.startswith(PLACEHOLDER_PREFIXES):
        raise ConfigError("is a known placeholder, not a secret")
    if len(value) < SECRET_KEY_MIN_LENGTH:
        raise ConfigError(
            f"is {len(value)} characters long, at least {SECRET_KEY_MIN_LENGTH} needed"
        )


def check_secret_keys(value: list[str]) -> None:
    for position, key in enumerate(value, start=1):
        try:
            check_secret_key(key)
        except ConfigError as exc:
            raise ConfigError(f"entry {position} {exc}") from None


def hosts_all_local(hosts: list[str] | None) -> bool:
    """True when every ALLOWED_HOSTS entry is the machine itself (none is empty)."""
    return bool(hosts) and all(host.lower() in LOCAL_HOSTS for host in hosts or [])


def published_in(var: Var, value: Any) -> bool:
    """Whether a sensitive variable's value (or its URL's password) is public."""
    if var.kind is Kind.URL:
        try:
            password = urlsplit(value).password
        except ValueError:
            return False
        return password is not None and unquote(password) in PUBLIC_SECRETS
    items = value if isinstance(value, list) else [value]
    return any(str(item).strip() in PUBLIC_SECRETS for item in items)


def check_hosts(value: list[str]) -> None:
    """Refuse '*' among the hosts (also the deploy check's core.E002)."""
    if "*" in value:
        raise ConfigError("contains '*', which accepts any Host header; list the hosts")


def check_database_vendor(vendor: str) -> None:
    """Refuse SQLite in production (also the deploy check's core.E005).

    `vendor` is a URL's scheme or a Django connection's vendor: both say "sqlite".
    """
    if vendor == "sqlite":
        raise ConfigError("is SQLite")


Sentinels = tuple[tuple[str, int], ...]


def check_sentinels(value: list[str]) -> None:
    sentinels_parse(value)


def sentinels_parse(entries: list[str]) -> Sentinels:
    """Turn REDIS_SENTINELS' ["host:port", ...] into ((host, port), ...)."""
    parsed = []
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"has {entry!r}, which is not host:port")
        parsed.append((host.strip("[]"), int(port)))
    return tuple(parsed)


def check_origins(value: list[str]) -> None:
    for origin in value:
        if origin == "*":
            raise ConfigError("contains '*'; list the origins explicitly")
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path:
            raise ConfigError(
                f"entry {origin!r} is not an origin like https://app.example.com"
            )


def check_admin_url(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/", value):
        raise ConfigError("must be a relative path ending in '/', like 'admin/'")


def check_throttle_rate(value: str) -> None:
    if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ConfigError("must look like '100/minute'")


def parse_bool(raw: str) -> bool:
    """Parse true/false/1/0/yes/no in any case."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{raw!r} is not a boolean")


# A URL's user name and password must percent-encode these; unencoded, they end the
# authority early and the rest of the password is read as port, path or fragment.
URL_ENCODING_HINT = (
    "percent-encode '#', '/', '?', '@' and ':' in the user name and password "
    "(%23, %2F, %3F, %40, %3A)"
)


def _parse_url(var: Var, raw: str) -> str:
    """Validate a URL. No message quotes any part of it: a password holding '#',
    '/' or '?' is cut there, and its pieces land in the port, path or fragment."""
    try:
        parts = urlsplit(raw)
        port = parts.port  # raises ValueError on a non-numeric port
    except ValueError:
        # The exception's text quotes the "port": often a piece of the password.
        raise ConfigError(
            f"is not a valid URL (its host or port does not parse; {URL_ENCODING_HINT})"
        ) from None
    authority_end = len(parts.scheme) + 3 + len(parts.netloc)
    if raw[: len(parts.scheme) + 3].endswith("://") and "@" in raw[authority_end:]:
        # An '@' past the host: the user name or password holds an unencoded
        # '/', '?' or '#' and the URL parsed with the wrong host.
        raise ConfigError(
            f"is not a valid URL ('@' after the host; {URL_ENCODING_HINT})"
        )
    if parts.scheme not in var.schemes:
        raise ConfigError(
            f"has scheme {parts.scheme or '(none)'!r}, expected "
            + " or ".join(var.schemes)
        )
    if parts.scheme != "sqlite" and not parts.hostname:
        raise ConfigError("has no host")
    if parts.scheme in {"postgres", "postgresql"} and not parts.path.strip("/"):
        raise ConfigError("names no database (add /<dbname>)")
    del port
    return raw


def parse_value(var: Var, raw: str) -> Any:
    """Turn one raw string into the registry's type, or raise ConfigError."""
    if var.kind is Kind.BOOL:
        value: Any = parse_bool(raw)
    elif var.kind is Kind.INT:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{raw!r} is not an integer") from None
    elif var.kind is Kind.FLOAT:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(f"{raw!r} is not a number") from None
    elif var.kind is Kind.LIST:
        value = [item.strip() for item in raw.split(",") if item.strip()]
    elif var.kind is Kind.CHOICE:
        value = raw.strip()
        if value not in var.choices:
            raise ConfigError(f"{raw!r} is not one of {', '.join(var.choices)}")
    elif var.kind is Kind.URL:
        value = _parse_url(var, raw.strip())
    else:
        value = raw
    if var.kind in {Kind.INT, Kind.FLOAT}:
        if var.minimum is not None and value < var.minimum:
            raise ConfigError(f"{value} is below the minimum {var.minimum:g}")
        if var.maximum is not None and value > var.maximum:
            raise ConfigError(f"{value} is above the maximum {var.maximum:g}")
    if var.check is not None:
        var.check(value)
    return value
