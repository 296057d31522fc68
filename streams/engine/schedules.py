"""Beat schedules of batch streams: one django-celery-beat ``PeriodicTask`` per batch stream,
named ``stream:<id>``, running ``streams.run_stream`` (trigger ``schedule``) over everything
new in its collectors. Created or updated with the stream on import, deleted with it (and
when the stream turns realtime: realtime streams run when data arrives).

The interval is the stream annotation's ``scheduleIntervalSeconds`` (60 to 86,400), else
``DEFAULT_INTERVAL_SECONDS`` (every 5 minutes).
"""

from __future__ import annotations

import json
import uuid

from django_celery_beat.models import IntervalSchedule, PeriodicTask

DEFAULT_INTERVAL_SECONDS = 300
MIN_INTERVAL_SECONDS = 60
MAX_INTERVAL_SECONDS = 86_400


def task_name(stream_id: uuid.UUID) -> str:
    return f"stream:{stream_id}"


def interval_seconds(annotation: dict | None) -> int:
    value = (annotation or {}).get("scheduleIntervalSeconds") if isinstance(annotation, dict) else None
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and MIN_INTERVAL_SECONDS <= value <= MAX_INTERVAL_SECONDS
    ):
        return value
    return DEFAULT_INTERVAL_SECONDS


def stream_schedule_sync(*, stream) -> PeriodicTask | None:
    """The batch stream's periodic task, created or updated; a realtime stream has none."""
    if stream.processing_type != "batch":
        stream_schedule_delete(stream_id=stream.pk)
        return None
    every = interval_seconds(stream.annotation)
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    task, _ = PeriodicTask.objects.update_or_create(
        name=task_name(stream.pk),
        defaults={
            "task": "streams.run_stream",
            "interval": interval,
            "crontab": None,
            "enabled": True,
            "args": json.dumps([str(stream.pk), "schedule"]),
            "kwargs": "{}",
        },
    )
    return task


def stream_schedule_delete(*, stream_id: uuid.UUID) -> int:
    deleted, _ = PeriodicTask.objects.filter(name=task_name(stream_id)).delete()
    return deleted
