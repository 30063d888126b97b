"""The Prometheus alert rules and scrape configuration, checked with no system binary.

Every expression is parsed by promql-parser (a PromQL parser from the dev lock) and
every rule file is checked for the structure Prometheus loads. `promtool check rules`
runs as well, as its own step of .ci/run.
"""

from __future__ import annotations

import re
from pathlib import Path

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[3]
OBSERVABILITY = ROOT / "deploy" / "observability"
NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RECORD_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
GROUP_KEYS = {"name", "interval", "limit", "rules", "query_offset"}
ALERT_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
RECORD_KEYS = {"record", "expr", "labels"}
SEVERITIES = {"page", "warn"}


def _duration_problem(value: object) -> str:
    if not isinstance(value, str):
        return f"{value!r} is not a duration"
    try:
        promql_parser.parse_duration(value)
    except ValueError as error:
        return f"{value!r} is not a duration ({error})"
    return ""


def _string_map_problems(where: str, value: object) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where} is not a mapping"]
    problems = []
    for key, item in value.items():
        if not isinstance(key, str) or not NAME.match(key):
            problems.append(f"{where}: {key!r} is not a valid label name")
        if not isinstance(item, str):
            problems.append(f"{where}.{key}: {item!r} is not a string")
    return problems


def _rule_problems(where: str, rule: object) -> list[str]:
    if not isinstance(rule, dict):
        return [f"{where} is not a mapping"]
    problems = []
    if ("alert" in rule) == ("record" in rule):
        return [f"{where} needs exactly one of alert and record"]
    kind = "alert" if "alert" in rule else "record"
    where = f"{where} ({rule[kind]})"
    allowed = ALERT_KEYS if kind == "alert" else RECORD_KEYS
    problems += [f"{where}: unknown key {key!r}" for key in sorted(set(rule) - allowed)]
    pattern = NAME if kind == "alert" else RECORD_NAME
    if not isinstance(rule[kind], str) or not pattern.match(rule[kind]):
        problems.append(f"{where}: {rule[kind]!r} is not a valid {kind} name")
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        problems.append(f"{where}: expr is missing")
    else:
        try:
            promql_parser.parse(expr)
        except ValueError as error:
            problems.append(f"{where}: expr does not parse: {error}")
    for key in ("for", "keep_firing_for"):
        if key in rule and (problem := _duration_problem(rule[key])):
            problems.append(f"{where}: {key} {problem}")
    for key in ("labels", "annotations"):
        if key in rule:
            problems += _string_map_problems(f"{where}.{key}", rule[key])
    if kind == "alert":
        # Routing and the on-call text depend on these two.
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{where}: labels.severity is not one of {SEVERITIES}")
        if not rule.get("annotations", {}).get("summary"):
            problems.append(f"{where}: annotations.summary is missing")
    return problems


def rule_file_problems(document: object) -> list[str]:
    """Return what Prometheus (or the on-call) would reject in a rule file."""
    if not isinstance(document, dict) or set(document) != {"groups"}:
        return ["the file must be a mapping with the single key 'groups'"]
    groups = document["groups"]
    if not isinstance(groups, list) or not groups:
        return ["groups must be a non-empty list"]
    problems: list[str] = []
    group_names: set[str] = set()
    alert_names: set[str] = set()
    for index, group in enumerate(groups):
        if not isinstance(group, dict):
            problems.append(f"group {index} is not a mapping")
            continue
        name = group.get("name")
        where = f"group {name!r}"
        if not isinstance(name, str) or not name:
            problems.append(f"group {index} has no name")
        elif name in group_names:
            problems.append(f"{where} appears twice")
        group_names.add(str(name))
        problems += [
            f"{where}: unknown key {key!r}" for key in sorted(set(group) - GROUP_KEYS)
        ]
        if "interval" in group and (problem := _duration_problem(group["interval"])):
            problems.append(f"{where}: interval {problem}")
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"{where}: rules must be a non-empty list")
            continue
        for position, rule in enumerate(rules):
            problems += _rule_problems(f"{where} rule {position}", rule)
            if isinstance(rule, dict) and "alert" in rule:
                if rule["alert"] in alert_names:
                    problems.append(f"alert {rule['alert']!r} appears twice")
                alert_names.add(rule["alert"])
    return problems


def _load(name: str) -> object:
    return yaml.safe_load((OBSERVABILITY / name).read_text())


def test_alert_rules_parse_and_have_the_structure_prometheus_loads() -> None:
    document = _load("alerts.yml")
    assert rule_file_problems(document) == []
    alerts = [r["alert"] for g in document["groups"] for r in g["rules"]]
    assert len(alerts) == 13
    assert "InventoryQueueBacklogOld" in alerts
    assert "InventoryHigh5xxRatio" in alerts
    assert "InventoryPoisonTask" in alerts


def test_rule_check_rejects_what_prometheus_would() -> None:
    broken = {
        "groups": [
            {
                "name": "g",
                "rules": [
                    {
                        "alert": "Unclosed",
                        "expr": "sum(rate(x[5m])",
                        "labels": {"severity": "page"},
                        "annotations": {"summary": "s"},
                    },
                    {
                        "alert": "NoSuchFunction",
                        "expr": "rates(x[5m]) > 0",
                        "for": "5 minutes",
                        "labels": {"severity": "urgent"},
                        "annotations": {},
                    },
                    {"alert": "Unclosed", "record": "both", "expr": "up"},
                ],
            },
            {"name": "g", "rules": []},
        ]
    }
    assert rule_file_problems(broken) == [
        "group 'g' rule 0 (Unclosed): expr does not parse: unclosed left parenthesis",
        "group 'g' rule 1 (NoSuchFunction): expr does not parse: "
        "unknown function with name 'rates'",
        "group 'g' rule 1 (NoSuchFunction): for '5 minutes' is not a duration "
        "(not a valid duration string: 5 minutes)",
        "group 'g' rule 1 (NoSuchFunction): labels.severity is not one of "
        f"{SEVERITIES}",
        "group 'g' rule 1 (NoSuchFunction): annotations.summary is missing",
        "group 'g' rule 2 needs exactly one of alert and record",
        "alert 'Unclosed' appears twice",
        "group 'g' appears twice",
        "group 'g': rules must be a non-empty list",
    ]


def test_scrape_config_names_the_jobs_the_alerts_use() -> None:
    config = _load("prometheus-scrape.yml")
    assert set(config) == {"scrape_configs", "rule_files"}
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == ["inventory-web", "inventory-worker"]
    assert jobs["inventory-web"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/prometheus/secrets/inventory-metrics-token",
    }
    assert jobs["inventory-web"]["static_configs"] == [{"targets": ["web:5000"]}]
    assert jobs["inventory-worker"]["static_configs"] == [{"targets": ["worker:9808"]}]
    alerts = (OBSERVABILITY / "alerts.yml").read_text()
    used = set(re.findall(r'job="([^"]+)"', alerts))
    assert used <= set(jobs)
