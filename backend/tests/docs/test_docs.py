"""Operator documents that cannot drift from the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from runtime.env import REGISTRY, docs, load
from tests.support.env import clean_environ
from tests.support.processes import run_python

ROOT = Path(__file__).resolve().parents[3]
BACKEND = ROOT / "backend"

# Variables our code may read that are not the application's configuration.
NOT_CONFIGURATION = {
    "DJANGO_SETTINGS_MODULE": "Django's own pointer to the settings module",
    "REMAP_SIGTERM": "Celery's switch, set by the entrypoint for the worker",
}


@pytest.mark.parametrize("name", sorted(docs.OUTPUTS))
def test_generated_document_is_up_to_date(name: str) -> None:
    expected = docs.OUTPUTS[name]()
    actual = (ROOT / name).read_text()
    assert actual == expected, f"{name} is stale: run `make docs`"


def test_every_variable_is_documented() -> None:
    text = (ROOT / "ENVIRONMENT_VARIABLES.md").read_text()
    example = (ROOT / ".env.example").read_text()
    for name in REGISTRY:
        assert f"| `{name}` |" in text, name
        assert re.search(rf"^(# )?{name}[= ]", example, re.MULTILINE), name


def _env_reads() -> dict[str, set[str]]:
    """Every environment variable name the code reads, by file."""
    python_patterns = [
        r"os\.environ\.get\(\s*[\"']([A-Z][A-Z0-9_]*)",
        r"os\.environ\[\s*[\"']([A-Z][A-Z0-9_]*)",
        r"os\.environ\.setdefault\(\s*[\"']([A-Z][A-Z0-9_]*)",
        r"os\.getenv\(\s*[\"']([A-Z][A-Z0-9_]*)",
        r"config_value\s+([A-Z][A-Z0-9_]*)",
        r"(?:ENV|config)\[\s*[\"']([A-Z][A-Z0-9_]*)",
    ]
    found: dict[str, set[str]] = {}
    for path in [
        *BACKEND.glob("config/*.py"),
        *BACKEND.glob("runtime/**/*.py"),
        *BACKEND.glob("apps/**/*.py"),
    ]:
        text = path.read_text()
        for pattern in python_patterns:
            for name in re.findall(pattern, text):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    shell = (BACKEND / "scripts" / "entrypoint.sh").read_text()
    for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", shell):
        found.setdefault(name, set()).add("backend/scripts/entrypoint.sh")
    for name in re.findall(r"config_value ([A-Z][A-Z0-9_]*)", shell):
        found.setdefault(name, set()).add("backend/scripts/entrypoint.sh")
    return found


def test_code_reads_no_variable_outside_the_registry() -> None:
    shell_builtins = {"LINENO", "BASH_COMMAND"}
    reads = _env_reads()
    assert {"APP_ROLE", "RUN_MIGRATIONS", "PROMETHEUS_MULTIPROC_DIR"} <= set(reads)
    unknown = {
        name: files
        for name, files in reads.items()
        if name not in REGISTRY
        and name not in NOT_CONFIGURATION
        and name not in shell_builtins
    }
    assert unknown == {}, "add these to runtime/env/variables.py (and run make docs)"


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_env_example_loads_while_every_host_is_local() -> None:
    """`cp .env.example .env && docker compose up` works on a laptop."""
    config = load(_env_example())
    assert config.problems == []
    assert config.debug is False
    assert config["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1"]
    assert config.database_url == "postgres://app:app-local-password@db:5432/app"
    assert config["REDIS_URL"] == "redis://redis:6379/0"


def test_env_example_with_a_real_host_is_refused_naming_each_public_secret() -> None:
    """Its secrets are public: the first real host name makes each one an error."""
    env = clean_environ(**{**_env_example(), "ALLOWED_HOSTS": "inventory.example.com"})
    result = run_python(["-m", "runtime.env"], env=env)
    assert result.returncode == 1
    published = (
        "published in this project's files (.env.example, the guide, the "
        "manifests), a placeholder, not a secret; expected a value of your own "
        "(generate it), or every ALLOWED_HOSTS entry local (127.0.0.1, ::1, "
        "localhost)"
    )
    assert result.stderr.splitlines()[:4] == [
        "Invalid configuration: 3 problems with environment variables:",
        f"  - DJANGO_SECRET_KEY is a value {published}",
        f"  - POSTGRES_PASSWORD is a value {published}",
        f"  - METRICS_TOKEN is a value {published}",
    ]


# A variable part of a message: `<...>` in the guide; {...} (f-strings), %s-style
# conversions and ${...} / $NAME (the entrypoint) in the code.
HOLE = "\x00"
PERCENT_CONVERSION = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfgix]")


def _code_message_templates() -> list[str]:
    """Every string the code may print, its variable parts replaced by HOLE."""
    templates = []
    for path in [
        *BACKEND.glob("config/*.py"),
        *BACKEND.glob("runtime/**/*.py"),
        *BACKEND.glob("apps/**/*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):  # implicit concatenation included
                templates.append(
                    "".join(
                        part.value if isinstance(part, ast.Constant) else HOLE
                        for part in node.values
                    )
                )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                templates.append(PERCENT_CONVERSION.sub(HOLE, node.value))
    shell = (BACKEND / "scripts" / "entrypoint.sh").read_text()
    templates += [
        re.sub(r"\$\{[^}]*\}|\$\w+", HOLE, line) for line in shell.splitlines()
    ]
    return templates


def _troubleshooting_index() -> list[str]:
    guide = (ROOT / "DEPLOYMENT_GUIDE.md").read_text()
    index = guide.split("\n### Index: message, cause, fix\n", 1)[1]
    index = index.split("\n### ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", index, re.MULTILINE)


def test_guide_quotes_the_error_messages() -> None:
    """Each message of the guide's troubleshooting index is printed by the code:
    with its `<...>` placeholders as the variable parts, it occurs in one string,
    f-string, %-format or entrypoint line of backend/ verbatim."""
    messages = _troubleshooting_index()
    assert len(messages) >= 15, messages
    templates = _code_message_templates()
    unknown = []
    for message in messages:
        quoted = re.sub(r"<[^>]+>", HOLE, message)
        # Enough fixed text to be a message, not a fragment that occurs anywhere.
        assert len(quoted.replace(HOLE, "").strip()) >= 12, message
        if not any(quoted in template for template in templates):
            unknown.append(message)
    assert unknown == [], "reworded in the code, or misquoted in the guide"


def _github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_guide_links_lead_to_its_headings() -> None:
    """The table of contents and every #link inside the guide land on a heading."""
    guide = (ROOT / "DEPLOYMENT_GUIDE.md").read_text()
    headings = re.findall(r"^#{2,4} (.+)$", guide, re.MULTILINE)
    anchors = {_github_anchor(h) for h in headings}
    links = re.findall(r"\]\(#([^)]+)\)", guide)
    assert len(links) >= 30
    assert sorted(set(links) - anchors) == []
    contents = guide.split("\n## Contents\n", 1)[1].split("\n## ", 1)[0]
    top_level = [h for h in re.findall(r"^## (.+)$", guide, re.MULTILINE)]
    listed = set(re.findall(r"\]\(#([^)]+)\)", contents))
    assert {_github_anchor(h) for h in top_level if h != "Contents"} <= listed


def test_guide_names_only_files_that_exist() -> None:
    guide = (ROOT / "DEPLOYMENT_GUIDE.md").read_text()
    paths = set(re.findall(r"(deploy/[\w./-]+\.(?:json|yaml|yml))", guide))
    assert paths, "the guide names the deployment files"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []
    for section in ("docker compose up", "Railway", "ECS", "Kubernetes", "Rollback"):
        assert section in guide, section


def test_readme_links_and_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for needle in (
        "make run",
        "make test",
        "docker compose up",
        "```mermaid",
        "(ENVIRONMENT_VARIABLES.md)",
        "(DEPLOYMENT_GUIDE.md)",
        "(PRODUCTION_READINESS_CHECKLIST.md)",
    ):
        assert needle in readme, needle
    for role in ("web", "worker", "beat", "migrate"):
        assert f"`{role}`" in readme


ITEM = re.compile(
    r"^- \[ \] (?P<text>.+?) — (?P<kind>test|command|decision): (?P<proof>.+)$"
)


def _checklist() -> list[re.Match]:
    lines = (ROOT / "PRODUCTION_READINESS_CHECKLIST.md").read_text().splitlines()
    items = [line for line in lines if line.startswith("- [ ]")]
    matches = [ITEM.match(line) for line in items]
    bad = [line for line, match in zip(items, matches, strict=True) if not match]
    assert bad == [], "items without exactly one proof marker"
    return [m for m in matches if m]


def test_checklist_has_the_breadth_of_a_review() -> None:
    items = _checklist()
    assert len(items) >= 100
    text = (ROOT / "PRODUCTION_READINESS_CHECKLIST.md").read_text()
    for group in (
        "Security",
        "Container",
        "Web server",
        "Database and migrations",
        "Celery",
        "Observability",
        "Configuration",
        "Platforms",
        "Business invariants",
        "Operations",
    ):
        assert f"## {group}" in text, group


def test_checklist_names_only_tests_that_exist() -> None:
    missing = []
    for item in _checklist():
        if item["kind"] != "test":
            continue
        for ref in re.findall(r"`([^`]+)`", item["proof"]):
            path, _, name = ref.partition("::")
            file = ROOT / path
            if not file.exists() or not re.search(
                rf"^\s*def {re.escape(name)}\(", file.read_text(), re.MULTILINE
            ):
                missing.append(ref)
    assert missing == []


# Words too common to tie a test to a claim.
COMMON_WORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "its",
        "not",
        "are",
        "from",
        "each",
        "every",
        "than",
        "that",
        "this",
        "any",
        "all",
        "one",
        "two",
        "their",
        "only",
        "when",
        "after",
        "before",
        "once",
        "into",
        "over",
        "under",
        "per",
        "test",
    ]
)


def _stems(text: str) -> set[str]:
    """Significant words of `text`, cut to five letters (named/names, probe/probes)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {w[:5] for w in words if len(w) >= 3 and w not in COMMON_WORDS}


def test_checklist_tests_refer_to_their_claims() -> None:
    """A named test's name or docstring shares a significant word with its item: a
    test moved under another claim, or an item rewritten away from its test, shows
    up here (the test itself is read for what it asserts by the reviewer)."""
    unrelated = []
    for item in _checklist():
        if item["kind"] != "test":
            continue
        claim = _stems(item["text"])
        for ref in re.findall(r"`([^`]+)`", item["proof"]):
            path, _, name = ref.partition("::")
            tree = ast.parse((ROOT / path).read_text())
            (function,) = [
                node
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef) and node.name == name
            ]
            own = _stems(
                name.replace("_", " ") + " " + (ast.get_docstring(function) or "")
            )
            if not own & claim:
                unrelated.append(ref)
    assert unrelated == []


def test_readme_answers_where_each_behaviour_lives_with_paths_that_exist() -> None:
    """The layout's "Where does it live?" table: every behaviour the newcomer asks
    about is listed, and every path it gives exists (a move cannot leave it stale)."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("Where does it live?", 1)[1].split("\n\n", 2)[1]
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    behaviours = [row.split("|")[1].strip() for row in rows[1:]]
    assert behaviours == [
        "Request IDs",
        "The token cache",
        "Throttling",
        "Readiness (`/health/ready/`)",
        "The container probe",
        "The worker watchdog",
        "Redelivery limits",
        "Queue metrics",
        "The connection budget",
    ]
    paths = [p for row in rows[1:] for p in re.findall(r"`([\w/]+\.py)`", row)]
    missing = [p for p in paths if not (ROOT / "backend" / p).is_file()]
    assert len(paths) >= 10
    assert missing == []
