"""The Celery app for a worker whose every flush batch keeps its transaction open a moment
(``FLUSH_BATCH_PAUSE_SECONDS``), so a test can kill the worker inside one
(tests/metering/flush/test_flush_worker_killed.py). Production code has no such pause: this
module wraps the last step of ``meters_flush_batch``'s transaction in the worker process only.
"""

import os
import time

import django

from config.celery import app

django.setup()  # the app registry, before a model is imported

from metering import flush  # noqa: E402

_emit = flush.flushed_records_emit


def _emit_then_pause(records):
    _emit(records)
    time.sleep(float(os.environ.get("FLUSH_BATCH_PAUSE_SECONDS", "0")))


flush.flushed_records_emit = _emit_then_pause

__all__ = ["app"]
