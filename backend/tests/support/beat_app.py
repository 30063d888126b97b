"""The project's Celery app with a fast test schedule (`celery -A` this module `beat`).

Same scheduler (RedBeat with the heartbeat), a 2-second entry, and a key prefix and
queue of the test's own, given in TEST_BEAT_MARKER.
"""

import os

from config.celery import app

_marker = os.environ["TEST_BEAT_MARKER"]
app.conf.redbeat_key_prefix = f"test:{_marker}:redbeat:"
app.conf.beat_schedule = {
    "record-beat": {
        "task": "tests.record_beat",
        "schedule": 2.0,
        "kwargs": {"marker": _marker},
        "options": {"expires": 2, "queue": f"test-{_marker}"},
    }
}
