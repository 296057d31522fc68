"""The streams app's Celery tasks, as the engine asks for them: by their registered names (the
names beat's schedule uses too). ``streams.tasks`` imports the engine's services, so the engine
never imports it: a task is looked up in the Celery app when it is queued."""

from __future__ import annotations

from celery import current_app
from celery.app.task import Task

RUN_STREAM = "streams.run_stream"
DELIVER_FLUSHED_RECORDS = "streams.deliver_flushed_records"
DELIVER_OUTPUT = "streams.deliver_output"


def streams_task(name: str) -> Task:
    """The registered task ``name`` (``.delay``/``.apply_async`` as on the task itself)."""
    return current_app.tasks[name]
