"""Runs left RUNNING by a dead worker are marked FAILED by the beat sweep; live ones are not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from streams.engine.services import ABANDONED_ERROR
from streams.models import StreamRun
from streams.tasks import fail_abandoned_runs
from tests.streams.conftest import minimal_config

pytestmark = pytest.mark.django_db


def _run(stream, *, started_minutes_ago: int, status=StreamRun.Status.RUNNING) -> StreamRun:
    return StreamRun.objects.create(
        account_id=stream.account_id,
        stream=stream,
        stream_cas=stream.cas,
        trigger=StreamRun.Trigger.REALTIME,
        status=status,
        started_at=timezone.now() - timedelta(minutes=started_minutes_ago),
    )


def test_the_sweep_fails_only_runs_running_longer_than_the_setting(import_stream, settings):
    settings.STREAM_RUN_ABANDONED_SECONDS = 600
    stream = import_stream(minimal_config()).stream
    abandoned = _run(stream, started_minutes_ago=11)
    running = _run(stream, started_minutes_ago=9)
    finished = _run(stream, started_minutes_ago=30, status=StreamRun.Status.SUCCEEDED)

    assert fail_abandoned_runs.apply().get() == 1
    assert fail_abandoned_runs.apply().get() == 0  # safe to run again

    abandoned.refresh_from_db()
    assert (abandoned.status, abandoned.error) == (StreamRun.Status.FAILED, ABANDONED_ERROR)
    assert abandoned.finished_at >= abandoned.started_at
    assert StreamRun.objects.get(pk=running.pk).status == StreamRun.Status.RUNNING
    assert StreamRun.objects.get(pk=finished.pk).status == StreamRun.Status.SUCCEEDED


def test_the_sweep_is_scheduled_every_minute():
    task = PeriodicTask.objects.get(name="streams: fail abandoned runs")
    assert (task.task, task.enabled, task.interval.every, task.interval.period) == (
        "streams.fail_abandoned_runs",
        True,
        1,
        "minutes",
    )
