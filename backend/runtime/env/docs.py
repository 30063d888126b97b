"""Generate ENVIRONMENT_VARIABLES.md and .env.example from the variable registry.

`make docs` (python -m runtime.env.docs) writes both files at the repository root;
a test fails when either differs from what this module generates.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runtime.env.schema import DATABASE_VARIABLES, LOCAL_HOSTS, Kind, Var
from runtime.env.variables import GROUPS, VARIABLES

ROOT = Path(__file__).resolve().parents[3]

# A working local configuration for `docker compose up` (docker-compose.yml): no real
# secret, plain HTTP on localhost, the compose services' host names.
COMPOSE_VALUES: dict[str, str] = {
    "DJANGO_SECRET_KEY": "compose-local-only-0f9d2c7b1e8a4d6f93b5c0e2a7d4f1b8c6e3a9d",
    "ALLOWED_HOSTS": "localhost,127.0.0.1",
    "CORS_ALLOWED_ORIGINS": "http://localhost:3000",
    "POSTGRES_USER": "app",
    "POSTGRES_PASSWORD": "app-local-password",
    "POSTGRES_DB": "app",
    "POSTGRES_HOST": "db",
    "REDIS_URL": "redis://redis:6379/0",
    # Local compose speaks plain HTTP on localhost; production keeps the defaults.
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_PROXY_SSL_HEADER": "false",
    "SECURE_HSTS_SECONDS": "0",
    "METRICS_TOKEN": "compose-local-metrics-token-not-secret",
}

_LOCAL = ", ".join(sorted(LOCAL_HOSTS - {"[::1]"}))
_PUBLIC = (
    "PUBLIC: this value is in the repository. Accepted only while every "
    f"ALLOWED_HOSTS entry is local ({_LOCAL}); refused in production. Generate "
    "your own before anyone else can reach the service."
)
# Why each line above departs from production, printed above it in .env.example: an
# operator who copies the file sees, in place, what to change before going live.
COMPOSE_NOTES: dict[str, str] = {
    "DJANGO_SECRET_KEY": _PUBLIC,
    "POSTGRES_PASSWORD": _PUBLIC,
    "METRICS_TOKEN": _PUBLIC,
    "ALLOWED_HOSTS": "LOCAL ONLY: while every entry is local, the public values "
    "in this file are accepted; add your real host name and each of them is "
    "refused at start, by name.",
    "SECURE_PROXY_SSL_HEADER": "LOCAL ONLY: no TLS proxy in front sets "
    "X-Forwarded-Proto here. In production (behind a proxy that sets it) delete "
    "this line: the default is true.",
    "SECURE_SSL_REDIRECT": "LOCAL ONLY: Compose serves plain HTTP on localhost, "
    "where a redirect to https:// leads nowhere. In production delete this line: "
    "the default is true.",
    "SECURE_HSTS_SECONDS": "LOCAL ONLY: HSTS is meaningless over plain HTTP. In "
    "production delete this line: the default is one year (31536000).",
}

PLATFORM_NOTES = """\
## Platform notes

- **Docker Compose**: every app service reads `.env` (`env_file: .env`); start from
  `cp .env.example .env`. `APP_ROLE` is set per service in `docker-compose.yml`. The
  `db` service also reads `POSTGRES_USER`, `POSTGRES_PASSWORD` and `POSTGRES_DB` from
  `.env`, and the app builds its database URL from the same variables. To keep the
  secrets in files instead, DEPLOYMENT_GUIDE.md ("Compose: `secrets:`") shows an
  opt-in override with `*_FILE` variables.
- **Railway**: Railway injects `PORT` (the web role listens on it) and, when a
  PostgreSQL or Redis service is referenced, `DATABASE_URL` / `REDIS_URL`
  (`${{Postgres.DATABASE_URL}}`, `${{Redis.REDIS_URL}}`). Set `APP_ROLE` per service.
- **AWS ECS**: non-secret values are `environment` entries in
  `deploy/ecs/task-definition-*.json`; `DJANGO_SECRET_KEY`, `DATABASE_URL`, `REDIS_URL`,
  `METRICS_TOKEN` and `SENTRY_DSN` come from Secrets Manager or SSM through `secrets`
  with `valueFrom` (never a value in the file). Behind an ALB set
  `TRUSTED_PROXY_COUNT=1`.
- **Kubernetes**: non-secret values in the ConfigMap `inventory-config`; secrets in the
  Secret `inventory-secrets`, mounted as files at `/run/secrets/inventory/` and named
  by `*_FILE` variables in each container's `env` (`deploy/k8s/`).
- **Secrets from files**: every variable marked *secret* below also has a `_FILE`
  form (e.g. `DJANGO_SECRET_KEY_FILE=/run/secrets/django_secret_key`): the value is
  read once at start from that file, its trailing newline stripped. Setting both
  forms, or naming an unreadable or empty file, is refused at start (the message
  names the file, never its content). Compose `secrets:`, Kubernetes secret volumes
  and Docker Swarm secrets all deliver files.
- Empty values count as unset everywhere (Compose and ECS pass empty strings).
"""


def _groups_in_order() -> list[tuple[str, list[Var]]]:
    """Each group's title and variables in the documents' order, empty ones left out."""
    grouped = [
        (title, [var for var in VARIABLES if var.group == group])
        for group, title in GROUPS.items()
    ]
    return [(title, members) for title, members in grouped if members]


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value) if value else "(empty)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _type(var: Var) -> str:
    if var.kind is Kind.CHOICE:
        return "one of " + ", ".join(f"`{c}`" for c in var.choices)
    if var.kind is Kind.URL:
        return "URL (" + ", ".join(f"`{s}://`" for s in var.schemes) + ")"
    bounds = []
    if var.minimum is not None:
        bounds.append(f"≥ {var.minimum:g}")
    if var.maximum is not None:
        bounds.append(f"≤ {var.maximum:g}")
    names = {
        Kind.STR: "string",
        Kind.SECRET: "secret string",
        Kind.LIST: "comma-separated list",
    }
    base = names.get(var.kind, var.kind.value)
    return f"{base} ({', '.join(bounds)})" if bounds else base


def _required(var: Var) -> str:
    if var.required_in_prod:
        return "**yes**"
    if var.name in DATABASE_VARIABLES:
        return "**yes**, this or the other form"
    return "no"


def environment_variables_md() -> str:
    """Return the variables reference, grouped, from the registry."""
    lines = [
        "# Environment variables",
        "",
        "<!-- Generated from backend/runtime/env/variables.py by `make docs`; "
        "do not edit. -->",
        "",
        "Every variable the backend reads, declared once in",
        "`backend/runtime/env/variables.py`. Production is the default "
        "(`DEBUG` unset or",
        "false): at start the process validates all of them and, if any is missing",
        "or wrong, prints one block naming each and exits with status 1. Booleans",
        "accept true/false/1/0/yes/no in any case. With `DEBUG=true` and nothing",
        "else, the project runs on embedded defaults (SQLite, in-memory cache,",
        "Celery tasks run in-process); the *debug default* column shows what",
        "changes then.",
        "",
    ]
    for title, members in _groups_in_order():
        lines += [
            f"## {title}",
            "",
            "| Variable | Type | Default | Debug default | Required in production "
            "| Description |",
            "|---|---|---|---|---|---|",
        ]
        for var in members:
            debug_default = (
                "" if var.debug_default is None else _show(var.debug_default)
            )
            if var.kind is Kind.SECRET and var.debug_default is not None:
                debug_default = "(a development key)"
            doc = var.doc
            if var.sensitive:
                doc += (
                    f" *Secret*: or `{var.file_name}`, the path of a file holding "
                    "it; a value published in this project's files is refused in "
                    "production."
                )
            cells = [
                f"`{var.name}`",
                _type(var),
                f"`{_show(var.default)}`" if var.default is not None else "—",
                f"`{debug_default}`" if debug_default else "",
                _required(var),
                doc.replace("|", "\\|"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(PLATFORM_NOTES)
    return "\n".join(lines)


def env_example() -> str:
    """Return a working .env for `docker compose up`, every variable listed."""
    lines = [
        "# Local configuration for `docker compose up` (cp .env.example .env).",
        "# Generated from backend/runtime/env/variables.py by `make docs`; "
        "no value here is a",
        "# real secret. Commented lines show the defaults; ENVIRONMENT_VARIABLES.md",
        "# explains each variable.",
        "#",
        "# FOR A LAPTOP ONLY. The secrets below are public (this file is in the",
        "# repository) and the HTTPS settings are off: production refuses the",
        "# public values as soon as ALLOWED_HOSTS names a host that is not local.",
        "# Lines marked LOCAL ONLY or PUBLIC say what to change before going live.",
        "",
    ]
    for title, members in _groups_in_order():
        lines.append(f"# --- {title} ---")
        for var in members:
            lines.append(f"# {var.doc}")
            if var.name in COMPOSE_NOTES:
                lines.append(f"# {COMPOSE_NOTES[var.name]}")
            if var.name in COMPOSE_VALUES:
                lines.append(f"{var.name}={COMPOSE_VALUES[var.name]}")
            elif var.name == "APP_ROLE":
                lines.append("# APP_ROLE is set per service in docker-compose.yml")
            else:
                default = "" if var.default is None else _show(var.default)
                if default == "(empty)":
                    default = ""
                lines.append(f"# {var.name}={default}")
            if var.sensitive:
                lines.append(
                    f"# or {var.file_name}=/run/secrets/<file> (a file holding "
                    "the value; not both)"
                )
        lines.append("")
    return "\n".join(lines)


OUTPUTS = {
    "ENVIRONMENT_VARIABLES.md": environment_variables_md,
    ".env.example": env_example,
}


def main(argv: list[str]) -> int:
    for name, render in OUTPUTS.items():
        (ROOT / name).write_text(render())
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
