"""Deprecated: `python -m apps.core.healthcheck` runs `python -m runtime.healthcheck`.

Kept for one release: a rolling deploy still has task definitions and pod specs
written before the probe moved to `runtime/healthcheck.py`, and their healthcheck
command must keep working until every one of them is replaced. Remove it in the
release after that. Django-free, like the probe it runs.
"""

from __future__ import annotations

import sys

from runtime.healthcheck import main

if __name__ == "__main__":
    sys.exit(main())
