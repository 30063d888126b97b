"""Garbage collection in forked web workers: the preloaded heap frozen, pauses timed.

gunicorn imports the application once in its master (`preload_app`) and forks the
workers from it. Left alone, every full (generation 2) collection in a worker walks
that whole preloaded heap (Django, DRF, the project's modules) with the worker's GIL
held, and writes to each object's GC header, so the pages the worker shares
copy-on-write with the master become private copies. Measured at 64 clients on the
sold-out refusal path (15 s, bench/README.md "The refusal path's tail"): full
collections of 63-81 ms, 3-6 per busy worker, every request of that worker waiting
meanwhile. `gc.freeze()` in the master right before each fork
(config/gunicorn_conf.py, `pre_fork`) moves the heap to the permanent generation,
which collections skip (Python's documentation of `gc.freeze` describes the
copy-on-write side): 4-9 ms each in the same run.

This module publishes the pauses as `python_gc_pause_seconds` (by generation) and the
frozen heap as `python_gc_frozen_objects`, so a latency tail that follows collections
can be told apart from one that follows the database. Import it in workers only: the
gauge's value belongs to the process that creates it, and a master's 0 would be the
minimum of every live process.
"""

from __future__ import annotations

import gc
import time
from collections import deque

from prometheus_client import Gauge, Histogram

gc_pause_seconds = Histogram(
    "python_gc_pause_seconds",
    "Garbage collection pauses of web workers, by generation (2 = full collection).",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
)
gc_frozen_objects = Gauge(
    "python_gc_frozen_objects",
    "Objects frozen before the fork (the preloaded application), in the live web "
    "worker with the fewest: 0 means a worker collects the whole preloaded heap.",
    multiprocess_mode="livemin",
)

# Pauses measured, not yet published. The GC callback must not publish them itself:
# in multiprocess mode prometheus_client guards every metric file with one
# non-reentrant lock, and a collection can run in a thread that holds it (one
# scheduled by an allocation runs at the interpreter's next check), which would
# deadlock. A bounded deque's append
# and popleft are atomic and take no lock of ours.
_unpublished: deque[tuple[int, float]] = deque(maxlen=1000)
_collection_started = 0.0


def _on_collection(phase: str, info: dict) -> None:
    global _collection_started
    if phase == "start":
        _collection_started = time.perf_counter()
    else:
        _unpublished.append(
            (info["generation"], time.perf_counter() - _collection_started)
        )


def gc_frozen_report() -> None:
    """In a freshly forked worker: publish how many objects the fork left frozen."""
    gc_frozen_objects.set(gc.get_freeze_count())


def gc_pauses_record() -> None:
    """Time every collection of this process; gc_pauses_publish() publishes them."""
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


def gc_pauses_publish() -> None:
    """Publish the pauses measured since the last call (after each request)."""
    while _unpublished:  # most requests: empty, one check
        try:
            generation, seconds = _unpublished.popleft()
        except IndexError:  # another thread took the last one
            return
        gc_pause_seconds.labels(generation=str(generation)).observe(seconds)
