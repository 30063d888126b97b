"""The operator's documents say what an operator can act on, and stay true.

Rollback without a hard-coded migration target, a troubleshooting index keyed by
symptom, Compose scaling, checklist commands that assert their values (and pass
here), the checklist's paging alerts equal to the rule file's, and the KEDA
comment naming where the queue is really set.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from runtime.env import REGISTRY
from tests.support.env import clean_environ

ROOT = Path(__file__).resolve().parents[3]
GUIDE = ROOT / "DEPLOYMENT_GUIDE.md"
CHECKLIST = ROOT / "PRODUCTION_READINESS_CHECKLIST.md"
OPERATOR_DOCUMENTS = [GUIDE, CHECKLIST, ROOT / "README.md"]

# `migrate <app> <NNNN...>` or `zero`, as a shell line or an argv list
# ("migrate","inventory","0001"): a target that means one release only.
HARD_CODED_TARGET = re.compile(
    r"\bmigrate[\"',\s]+[a-z_]+[\"',\s]+(?:\d{4}\w*|zero)\b", re.IGNORECASE
)


def _section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def _anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_anchor(h) for h in re.findall(r"^#{2,4} (.+)$", text, re.MULTILINE)}


def test_hard_coded_target_pattern_catches_what_it_must() -> None:
    for bad in (
        "python manage.py migrate inventory 0001",
        '"command":["web","python","manage.py","migrate","inventory","0001"]',
        'args: ["manage.py", "migrate", "inventory", \'0002_x\']',
        "manage.py migrate inventory zero",
    ):
        assert HARD_CODED_TARGET.search(bad), bad
    for good in (
        "python manage.py migrate inventory <NNNN_name>",
        "python manage.py migrate --no-input",
        "manage.py migrate_locked",
    ):
        assert not HARD_CODED_TARGET.search(good), good


def test_rollback_reverses_to_the_previous_releases_last_migration() -> None:
    for document in OPERATOR_DOCUMENTS:
        found = HARD_CODED_TARGET.findall(document.read_text())
        assert found == [], f"{document.name}: hard-coded migration target {found}"
    rollback = _section(GUIDE.read_text(), "## Rollback")
    assert "showmigrations inventory | tail -n 1" in rollback
    assert "python manage.py migrate inventory <NNNN_name>" in rollback


SYMPTOMS = (
    "Reservations do not expire",
    "Tasks are not running",
    "502 during a deploy",
    "Logins fail after a restart",
)


def test_symptom_index_leads_to_sections() -> None:
    guide = GUIDE.read_text()
    index = guide.split("\n### Index: symptom, where to look\n", 1)[1]
    index = index.split("\n### ", 1)[0]
    rows = re.findall(r"^\| (?!Symptom |---)(.+?) \| (.+) \|$", index, re.MULTILINE)
    assert [row[0].split(" (")[0] for row in rows] == list(SYMPTOMS)
    anchors = _anchors(guide)
    for symptom, where in rows:
        links = re.findall(r"\]\(#([^)]+)\)", where)
        assert links, symptom
        assert sorted(set(links) - anchors) == [], symptom
    contents = _section(guide, "## Contents")
    assert "(#index-symptom-where-to-look)" in contents
    assert "(#backup-and-restore)" in contents


def test_compose_scaling_names_what_changes_with_it() -> None:
    guide = GUIDE.read_text()
    section = guide.split("\n### Compose: more workers\n", 1)[1].split("\n### ", 1)[0]
    assert "docker compose up -d --scale worker=" in section
    for needed in ("DB_EXPECTED_REPLICAS", "CELERY_WORKER_CONCURRENCY", "core.W006"):
        assert needed in section, needed
    # What it says about the shipped file is true: worker sets its own replicas,
    # web publishes a fixed host port, beat is pinned to one.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["worker"]["environment"]["DB_EXPECTED_REPLICAS"] == "1"
    assert compose["web"]["ports"] == ["5000:5000"]
    assert compose["beat"]["deploy"]["replicas"] == 1


ITEM = re.compile(r"^- \[ \] (?P<text>.+?) — command: `(?P<command>.+)`$")
# How a command asserts a value, not only that something ran.
ASSERTING = (
    re.compile(r'\btest "\$\('),  # test "$(...)" = expected
    re.compile(r"\| grep -[a-zA-Z]*[xF]"),  # a whole line, or a fixed string
    re.compile(r"--exit-code\b"),  # git diff: no change
    re.compile(r"(^|&& )! "),  # must fail
    re.compile(r"--fail-level WARNING"),  # Django's checks: any warning fails
    re.compile(r"^promtool check "),
    re.compile(r"^(make [a-z-]+( && make [a-z-]+)*|\.ci/run)$"),  # test suites
)


def _command_items() -> list[tuple[str, str]]:
    items = []
    for line in CHECKLIST.read_text().splitlines():
        if match := ITEM.match(line):
            items.append((match["text"], match["command"]))
    return items


def test_checklist_commands_assert_their_values() -> None:
    items = _command_items()
    assert len(items) >= 10
    weak = [
        command
        for _, command in items
        if not any(pattern.search(command) for pattern in ASSERTING)
    ]
    assert weak == [], "these commands succeed whatever the value"


def test_checklist_local_commands_pass_and_can_fail() -> None:
    """The commands that need only this checkout run here, as an operator's shell
    runs them (none of the run's own variables): each passes, and the same command
    with the expected value changed fails."""
    local = [
        command
        for _, command in _command_items()
        if command.startswith("cd backend && ") and "../.venv/bin/" in command
    ]
    assert len(local) >= 4
    for command in local:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=clean_environ(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    # Able to fail: one expected value changed makes each assertion fail.
    for command, wrong in (
        (local[0], local[0].replace("threads *= 4", "threads *= 5")),
        (local[1], local[1].replace("'connect_timeout': 5", "'connect_timeout': 6")),
    ):
        assert wrong != command
        result = subprocess.run(
            ["bash", "-c", wrong],
            cwd=ROOT,
            env=clean_environ(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert result.returncode != 0, wrong


def test_checklist_paging_alerts_are_the_rule_files() -> None:
    rules = yaml.safe_load((ROOT / "deploy/observability/alerts.yml").read_text())
    paging = {
        rule["alert"]
        for group in rules["groups"]
        for rule in group["rules"]
        if rule["labels"]["severity"] == "page"
    }
    (item,) = [
        line
        for line in CHECKLIST.read_text().splitlines()
        if line.startswith("- [ ] Alert routing")
    ]
    assert set(re.findall(r"`(Inventory\w+)`", item)) == paging


def test_keda_list_name_is_the_queue_tasks_are_sent_to() -> None:
    text = (ROOT / "deploy/k8s/worker-scaledobject.yaml").read_text()
    (list_name,) = re.findall(r"^\s+listName: (\S+)$", text, re.MULTILINE)
    configmap = yaml.safe_load((ROOT / "deploy/k8s/configmap.yaml").read_text())
    queues = configmap["data"].get("CELERY_WORKER_QUEUES")
    expected = (
        queues.split(",")[0].strip()
        if queues
        else REGISTRY["CELERY_WORKER_QUEUES"].default[0]
    )
    assert list_name == expected
    # Each file the comment names as where the queue is set really sets it.
    comment = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    named = re.findall(r"[\w./-]+\.(?:py|ya?ml)\b", comment)
    assert named, comment
    for name in named:
        path = ROOT / name if (ROOT / name).exists() else ROOT / "deploy/k8s" / name
        assert "CELERY_WORKER_QUEUES" in path.read_text(), name


def test_backup_and_restore_covers_each_platform() -> None:
    guide = GUIDE.read_text()
    section = _section(guide, "## Backup and restore")
    backup = section.split("\n### Take a backup\n", 1)[1].split("\n### ", 1)[0]
    restore = section.split("\n### Restore\n", 1)[1].split("\n### ", 1)[0]
    for platform in ("Compose", "Kubernetes", "ECS", "Railway"):
        assert f"**{platform}" in backup, platform
        assert f"**{platform}" in restore, platform
    assert backup.count("--format=custom") >= 4
    assert "pg_restore --clean --if-exists" in restore
    assert restore.count("restore_resync") >= 4
    assert "make restore-drill" in section
    # The guide's reason for the postgres image: the application image has no
    # PostgreSQL client, and installs nothing that would bring one.
    assert "postgres:16" in backup
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"apt-get install[^\n]*", dockerfile)
    assert installs, "the Dockerfile installs its packages with apt-get"
    assert not [line for line in installs if "postgresql" in line], installs
