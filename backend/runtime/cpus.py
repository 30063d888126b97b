"""CPUs a process may really use (affinity and cgroup quota), for sizing pools.

`os.cpu_count()` in a container reports the host's CPUs: 64 workers for a container
limited to half a CPU.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """Return the CPUs this process may use: affinity, then the cgroup CPU quota."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, quota)
    return cpus


def _cgroup_quota(root: Path) -> float | None:
    v2 = root / "cpu.max"
    try:
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1_quota = root / "cpu" / "cpu.cfs_quota_us"
        if v1_quota.exists():
            quota_us = int(v1_quota.read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def worker_count(
    *, configured: int | None, maximum: int, cgroup_root: Path = Path("/sys/fs/cgroup")
) -> int:
    """Return GUNICORN_WORKERS, else 2 x usable CPUs + 1 capped by the maximum."""
    if configured:
        return configured
    # A 0.5 CPU quota still gets one CPU's worth of workers (rounded up).
    cpus = max(1, math.ceil(usable_cpus(cgroup_root)))
    return max(1, min(2 * cpus + 1, maximum))
