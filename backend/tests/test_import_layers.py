"""The import layers hold: runtime/ <- apps/ <- config/, and no import circle.

The rules live in tests/support/import_layers.py. The first tests read this
repository's backend/; the rest build small package trees with one violation each, so
the checker is shown to find what it looks for (and to refuse an empty layer).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.import_layers import (
    apps_import_config,
    import_cycles,
    runtime_imports_django_at_import_time,
    runtime_imports_upward,
    runtime_loads_django,
)

BACKEND_DIR = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "rule",
    [
        apps_import_config,
        runtime_imports_upward,
        runtime_imports_django_at_import_time,
        runtime_loads_django,
        import_cycles,
    ],
    ids=lambda rule: rule.__name__,
)
def test_the_layers_import_one_way(rule) -> None:
    """apps/ never imports config; runtime/ imports neither apps nor config, nor
    Django at import time (checked in the source and in a fresh interpreter); no
    import cycle anywhere."""
    problems = rule(BACKEND_DIR)
    assert not problems, "\n".join(problems)


# The checker itself, on synthetic trees.

CLEAN = {
    "runtime/__init__.py": "",
    "runtime/files.py": "import os\n\nPATH = os.sep\n",
    "runtime/probe.py": (
        "from runtime.files import PATH\n\n\ndef main():\n"
        "    import django  # late: not at import time\n\n    return PATH\n"
    ),
    "runtime/__main__.py": "raise SystemExit('a __main__ is never imported')\n",
    "apps/__init__.py": "",
    "apps/core/__init__.py": "",
    "apps/core/models.py": "import django.db\n\nfrom runtime import files\n",
    "apps/core/views.py": "from . import models\nfrom .models import django\n",
    "config/__init__.py": "",
    "config/settings.py": "from apps.core import views\nimport runtime.probe\n",
}


def _tree(root: Path, files: dict[str, str | None]) -> Path:
    """Write CLEAN updated with `files` (None removes a file) under root."""
    for name, text in {**CLEAN, **files}.items():
        if text is not None:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return root


ALL_RULES = (
    apps_import_config,
    runtime_imports_upward,
    runtime_imports_django_at_import_time,
    runtime_loads_django,
    import_cycles,
)


def test_a_clean_tree_has_no_problem(tmp_path: Path) -> None:
    root = _tree(tmp_path, {})
    for rule in ALL_RULES:
        assert rule(root) == [], rule.__name__


@pytest.mark.parametrize(
    "source",
    [
        "import config.settings\n",
        "from config import settings\n",
        "def ready():\n    import config.celery\n",
        "class A:\n    def ready(self):\n        from config.settings import X\n",
        "from importlib import import_module\n\nimport_module('config.settings')\n",
    ],
)
def test_apps_importing_config_is_reported_with_file_and_line(
    tmp_path: Path, source: str
) -> None:
    root = _tree(tmp_path, {"apps/core/checks.py": "import os\n\n" + source})

    problems = apps_import_config(root)

    assert len(problems) == 1, problems
    assert problems[0].startswith("apps/core/checks.py:")
    assert "apps.core.checks imports config" in problems[0]


def test_runtime_importing_apps_or_config_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "runtime/up.py": (
                "from apps.core import models\n\n\ndef f():\n"
                "    from config import settings\n"
            )
        },
    )

    problems = runtime_imports_upward(root)

    assert [p.split(";")[0] for p in problems] == [
        "runtime/up.py:1: runtime.up imports apps.core.models",
        "runtime/up.py:5: runtime.up imports config.settings (not at import time)",
    ]


@pytest.mark.parametrize(
    "source",
    ["import django.conf\n", "from django.conf import settings\n"],
)
def test_runtime_importing_django_at_import_time_is_reported(
    tmp_path: Path, source: str
) -> None:
    root = _tree(tmp_path, {"runtime/log.py": "import json\n" + source})

    ast_problems = runtime_imports_django_at_import_time(root)
    loaded = runtime_loads_django(root)

    assert len(ast_problems) == 1, ast_problems
    assert ast_problems[0].startswith("runtime/log.py:2: runtime.log imports django")
    assert len(loaded) == 1, loaded
    assert "importing runtime.log loaded django" in loaded[0]
    assert "runtime/log.py:2" in loaded[0]


def test_runtime_loading_django_through_another_module_is_reported(
    tmp_path: Path,
) -> None:
    """The source of runtime/ names no django: only the real import finds this."""
    root = _tree(
        tmp_path,
        {
            "helper/__init__.py": "import django.utils\n",
            "runtime/log.py": "import helper\n",
        },
    )

    assert runtime_imports_django_at_import_time(root) == []
    loaded = runtime_loads_django(root)
    assert len(loaded) == 1, loaded
    assert "importing runtime.log loaded django" in loaded[0]
    assert "runtime/log.py:1 -> helper/__init__.py:1" in loaded[0]


def test_runtime_that_fails_to_import_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"runtime/broken.py": "import does_not_exist\n"})

    (problem,) = runtime_loads_django(root)

    assert "importing runtime/ without DJANGO_SETTINGS_MODULE failed" in problem
    assert "does_not_exist" in problem


def test_a_circle_of_late_imports_is_reported_naming_its_modules(
    tmp_path: Path,
) -> None:
    root = _tree(
        tmp_path,
        {
            "apps/core/deliveries.py": (
                "def limit():\n    from apps.core.queues import KEY\n"
            ),
            "apps/core/queues.py": (
                "KEY = 1\n\n\ndef redis():\n    from apps.core import deliveries\n"
            ),
        },
    )

    (problem,) = import_cycles(root)

    assert problem.splitlines() == [
        "import cycle: apps.core.deliveries -> apps.core.queues -> "
        "apps.core.deliveries",
        "  apps/core/deliveries.py:2: apps.core.deliveries imports apps.core.queues"
        " (not at import time)",
        "  apps/core/queues.py:5: apps.core.queues imports apps.core.deliveries"
        " (not at import time)",
    ]


def test_a_circle_across_layers_and_packages_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            # config.settings -> apps.core.views -> apps.core.models -> config
            "apps/core/models.py": "from ..core import views\nimport config\n",
            "config/__init__.py": "from .settings import *\n",
        },
    )

    problems = import_cycles(root)

    assert len(problems) == 1, problems
    first = problems[0].splitlines()[0]
    assert first == (
        "import cycle: apps.core.models -> apps.core.views -> apps.core.models"
    )
    assert "same circle also holds: config, config.settings" in problems[0]


@pytest.mark.parametrize("layer", ["apps", "config", "runtime"])
@pytest.mark.parametrize("state", ["missing", "empty", "only __init__"])
def test_a_missing_or_empty_layer_fails_every_rule_that_reads_it(
    tmp_path: Path, layer: str, state: str
) -> None:
    files: dict[str, str | None] = {
        name: None for name in CLEAN if name.startswith(layer + "/")
    }
    if state == "only __init__":
        files[f"{layer}/__init__.py"] = ""
    root = _tree(tmp_path, files)
    if state == "empty":
        (root / layer).mkdir()

    reading = {
        "apps": (apps_import_config, import_cycles),
        "config": (import_cycles,),
        "runtime": (
            runtime_imports_upward,
            runtime_imports_django_at_import_time,
            runtime_loads_django,
            import_cycles,
        ),
    }[layer]
    for rule in reading:
        problems = rule(root)
        assert any(f"{layer}/ has no modules" in p for p in problems), rule.__name__
