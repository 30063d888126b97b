"""Loading the environment: every variable parsed, then the rules between variables.

Validation collects every problem before reporting, so an operator fixes a bad
deployment in one round, not one variable per restart. Settings, gunicorn's
configuration and the container probe read the environment only through `load()`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from runtime.env.schema import (
    BROKER_ROLES,
    DATABASE_EXPECTED,
    LOCAL_HOSTS,
    POSTGRES_PARTS,
    ConfigError,
    Kind,
    check_database_vendor,
    hosts_all_local,
    parse_bool,
    parse_value,
    published_in,
)
from runtime.env.variables import REGISTRY, VARIABLES


@dataclass
class Problem:
    name: str
    message: str
    expected: str


@dataclass
class Config:
    """Parsed values of every registered variable, plus the problems found."""

    values: dict[str, Any]
    problems: list[Problem]
    debug: bool
    # The database the settings connect to: DATABASE_URL, or the URL built from
    # the POSTGRES_* parts; None without either.
    database_url: str | None = None
    # DATABASE_DIRECT_URL, else the pooled (or only) database URL.
    database_direct_url: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str) -> Any:
        if name not in REGISTRY:
            raise KeyError(
                f"{name} is not in the variable registry (runtime/env/variables.py)"
            )
        return self.values.get(name)


def _read_secret_file(path: str) -> str:
    """A `*_FILE`'s value: the file's text, its trailing newline stripped.

    Messages name the path, never the content: the file holds a secret.
    """
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"names {path}, which cannot be read ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"names {path}, which is not UTF-8 text") from None
    # `echo value > file` and editors add a newline that is no part of the secret.
    value = content.rstrip("\r\n")
    if not value.strip():
        raise ConfigError(f"names {path}, which is empty")
    return value


def _postgres_url_from_parts(values: Mapping[str, Any]) -> str:
    user = quote(values["POSTGRES_USER"], safe="")
    password = quote(values["POSTGRES_PASSWORD"], safe="")
    host = values["POSTGRES_HOST"]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address needs brackets in a URL
    return (
        f"postgres://{user}:{password}@{host}:{values['POSTGRES_PORT']}/"
        f"{quote(values['POSTGRES_DB'], safe='')}"
    )


# The rules between variables, in the order load() reports their problems.


def task_time_problems(*, values: Mapping[str, Any]) -> list[Problem]:
    """Keep soft limit < hard limit < visibility timeout.

    With late acks on Redis, a message unacknowledged for longer than the visibility
    timeout is delivered again: a task still running (up to its hard limit), or one
    waiting for a countdown, ETA or retry delay, would run twice. The project's tasks
    use no countdown, ETA or retry delay (tests/config/test_env.py guards this); one
    that does must add its delay here.
    """
    soft = values.get("CELERY_TASK_SOFT_TIME_LIMIT")
    hard = values.get("CELERY_TASK_TIME_LIMIT")
    visibility = values.get("CELERY_VISIBILITY_TIMEOUT")
    problems: list[Problem] = []
    if soft is not None and hard is not None and soft >= hard:
        problems.append(
            Problem(
                "CELERY_TASK_SOFT_TIME_LIMIT",
                f"({soft}) is not below CELERY_TASK_TIME_LIMIT ({hard})",
                "a soft limit below the hard one, or the task never gets to clean up",
            )
        )
    if visibility is not None and hard is not None and visibility <= hard:
        problems.append(
            Problem(
                "CELERY_VISIBILITY_TIMEOUT",
                f"({visibility}) is not above CELERY_TASK_TIME_LIMIT ({hard})",
                "a value above the hard time limit, or late-acked tasks run twice",
            )
        )
    return problems


def public_secret_problems(*, values: Mapping[str, Any], debug: bool) -> list[Problem]:
    """Refuse a published secret (PUBLIC_SECRETS) unless the hosts are all local.

    The exception keeps `cp .env.example .env && docker compose up` working on a
    laptop; the first non-local host (a real deployment) makes each one an error.
    """
    if debug or hosts_all_local(values.get("ALLOWED_HOSTS")):
        return []
    problems = []
    for var in VARIABLES:
        value = values.get(var.name)
        if not var.sensitive or not value or not published_in(var, value):
            continue
        what = "has a password" if var.kind is Kind.URL else "is a value"
        problems.append(
            Problem(
                var.name,
                f"{what} published in this project's files (.env.example, the "
                "guide, the manifests), a placeholder, not a secret",
                "a value of your own (generate it), or every ALLOWED_HOSTS entry "
                "local (" + ", ".join(sorted(LOCAL_HOSTS - {"[::1]"})) + ")",
            )
        )
    return problems


def broker_problems(
    *, values: Mapping[str, Any], debug: bool, reported: set[str]
) -> list[Problem]:
    """Web, worker and beat need a broker outside DEBUG (see BROKER_ROLES).

    A missing setting, refused at start; a Redis that is *down* is an outage, which
    web rides out degraded (the entrypoint's dependency wait).
    """
    role = values.get("APP_ROLE")
    if debug or role not in BROKER_ROLES:
        return []
    if values.get("REDIS_URL") or values.get("CELERY_BROKER_URL"):
        return []
    if reported & {"REDIS_URL", "CELERY_BROKER_URL"}:
        return []  # set, but unusable: a problem above already names it
    return [
        Problem(
            "REDIS_URL",
            f"is missing (and CELERY_BROKER_URL too): the {role} role needs a broker",
            "a redis:// URL, or CELERY_BROKER_URL",
        )
    ]


def metrics_token_problems(*, values: Mapping[str, Any]) -> list[Problem]:
    """The previous metrics token is accepted only next to a current one."""
    if values.get("METRICS_TOKEN_PREVIOUS") and not values.get("METRICS_TOKEN"):
        return [
            Problem(
                "METRICS_TOKEN_PREVIOUS",
                "is set without METRICS_TOKEN",
                "the new token in METRICS_TOKEN while the old one is accepted",
            )
        ]
    return []


def database_url_resolve(*, values: Mapping[str, Any]) -> str | None:
    """DATABASE_URL, else the URL the three POSTGRES_* parts make, else None (in
    DEBUG the settings fall back to SQLite then)."""
    if values.get("DATABASE_URL"):
        return values["DATABASE_URL"]
    if all(values.get(name) for name in POSTGRES_PARTS):
        return _postgres_url_from_parts(values)
    return None


def database_problems(
    *, values: Mapping[str, Any], debug: bool, reported: set[str]
) -> list[Problem]:
    """One database is required in production: a URL, or the three POSTGRES_* parts
    together; never SQLite."""
    if values.get("DATABASE_URL"):
        if debug:
            return []
        try:
            check_database_vendor(urlsplit(values["DATABASE_URL"]).scheme)
        except ConfigError as exc:
            return [
                Problem("DATABASE_URL", str(exc), "a postgres:// URL in production")
            ]
        return []
    if all(values.get(name) for name in POSTGRES_PARTS):
        return []
    if any(values.get(name) for name in POSTGRES_PARTS):
        return [
            Problem(name, "is missing", "set with the other POSTGRES_* variables")
            for name in POSTGRES_PARTS
            if not values.get(name)
        ]
    if debug or "DATABASE_URL" in reported:
        return []
    return [Problem("DATABASE_URL", "is missing", DATABASE_EXPECTED)]


def sentinel_problems(*, values: Mapping[str, Any]) -> list[Problem]:
    """Sentinels find a master by the name REDIS_URL gives."""
    if values.get("REDIS_SENTINELS") and not values.get("REDIS_URL"):
        return [
            Problem(
                "REDIS_SENTINELS",
                "is set without REDIS_URL",
                "REDIS_URL naming the master: redis://[:password@]<master-name>/<db>",
            )
        ]
    return []


def direct_url_problems(
    *, values: Mapping[str, Any], database_url: str | None
) -> list[Problem]:
    """DATABASE_DIRECT_URL bypasses a pooler, so it needs a database behind one."""
    if values.get("DATABASE_DIRECT_URL") and not database_url:
        return [
            Problem(
                "DATABASE_DIRECT_URL",
                "is set without a database to bypass",
                "set with DATABASE_URL (or the POSTGRES_* parts)",
            )
        ]
    return []


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate every registered variable; collect problems, never raise."""
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    values: dict[str, Any] = {}

    def raw_of(name: str) -> str | None:
        raw = environ.get(name)
        # Compose and ECS pass unset optional values as empty strings: treat as unset.
        return None if raw is None or raw.strip() == "" else raw

    debug = False
    debug_raw = raw_of("DEBUG")
    if debug_raw is not None:
        try:
            debug = parse_bool(debug_raw)
        except ConfigError as exc:
            problems.append(Problem("DEBUG", str(exc), REGISTRY["DEBUG"].expected()))

    # Variables set but unusable, for a reason already reported (a bad value or
    # *_FILE): no second "is missing" about them.
    reported: set[str] = set()
    for var in VARIABLES:
        raw = raw_of(var.name)
        source = ""
        path = raw_of(var.file_name) if var.sensitive else None
        if path is not None:
            if raw is not None:
                problems.append(
                    Problem(
                        var.file_name,
                        f"and {var.name} are both set",
                        f"one of the two: the value in {var.name}, or a file "
                        f"holding it in {var.file_name}",
                    )
                )
                reported.add(var.name)
                values[var.name] = var.default
                continue
            try:
                raw = _read_secret_file(path)
            except ConfigError as exc:
                problems.append(
                    Problem(
                        var.file_name, str(exc), "a readable file holding the value"
                    )
                )
                reported.add(var.name)
                values[var.name] = var.default
                continue
            source = f"(read from {var.file_name}={path}) "
        if raw is None:
            if debug and var.debug_default is not None:
                values[var.name] = var.debug_default
            elif var.required_in_prod and not debug:
                problems.append(Problem(var.name, "is missing", var.expected()))
                values[var.name] = None
            else:
                values[var.name] = var.default
            continue
        try:
            values[var.name] = parse_value(var, raw)
        except ConfigError as exc:
            problems.append(Problem(var.name, source + str(exc), var.expected()))
            reported.add(var.name)
            values[var.name] = var.default
    values["DEBUG"] = debug

    problems.extend(task_time_problems(values=values))
    problems.extend(public_secret_problems(values=values, debug=debug))
    named = reported | {problem.name for problem in problems}
    problems.extend(broker_problems(values=values, debug=debug, reported=named))
    problems.extend(metrics_token_problems(values=values))
    problems.extend(database_problems(values=values, debug=debug, reported=reported))
    problems.extend(sentinel_problems(values=values))
    database_url = database_url_resolve(values=values)
    problems.extend(direct_url_problems(values=values, database_url=database_url))
    return Config(
        values=values,
        problems=problems,
        debug=debug,
        database_url=database_url,
        # Session work (the migration lock) needs a connection the pooler cannot
        # hand to another client between statements.
        database_direct_url=values.get("DATABASE_DIRECT_URL") or database_url,
    )


def format_problems(problems: list[Problem]) -> str:
    """Render all problems as one block an operator can act on."""
    noun = "problem" if len(problems) == 1 else "problems"
    lines = [
        f"Invalid configuration: {len(problems)} {noun} with environment variables:"
    ]
    for problem in problems:
        lines.append(
            f"  - {problem.name} {problem.message}; expected {problem.expected}"
        )
    lines.append("See ENVIRONMENT_VARIABLES.md. Nothing was started.")
    return "\n".join(lines)


def load_or_exit(environ: Mapping[str, str] | None = None) -> Config:
    """Load the configuration; on any problem print one block and exit with status 1."""
    config = load(environ)
    if config.problems:
        sys.stderr.write(format_problems(config.problems) + "\n")
        sys.stderr.flush()
        # SystemExit, not an exception: the operator needs the block, not a traceback.
        raise SystemExit(1)
    return config


def main(argv: list[str]) -> int:
    """`python -m runtime.env` validates; `--get NAME` prints one parsed value."""
    config = load_or_exit()
    if len(argv) == 2 and argv[0] == "--get":
        print(config.get(argv[1]))
        return 0
    print("Configuration OK")
    return 0
