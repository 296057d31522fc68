"""Celery time limits with a real worker: a stream run longer than its soft limit is recorded
FAILED with the reason (not as an unexpected error) and its batch waits for the retry, with the
prefork pool (production's) and the solo pool (the embedded default's, through its alarm).

The slow run is a script inside a generous budget (raised for the worker) over 200 records of
100-element lists: about 10,000 comprehension iterations per record, several seconds in all."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from django.conf import settings

from collection.models import CollectedBatch, Collector, ConsumerOffset
from config.celery import app
from streams import services as stream_services
from streams.engine.services import TIME_LIMIT_ERROR
from streams.models import StreamRun
from tests.conftest import client_for
from tests.streams.conftest import ACTOR
from tests.support.celery_worker import running_worker

SLOW_SCRIPT = "size(record.L.map(a, record.L.map(b, a + b))) > 0"
GENEROUS_BUDGET = {"STREAM_SCRIPT_MAX_STEPS": "100000000", "STREAM_SCRIPT_MAX_COLLECTION_SIZE": "1000000"}


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def realtime_stream(account, collector, expression: str, name: str):
    solution = stream_services.solution_create(account=account, name=f"Limits {name}")
    return stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config={
            "name": name,
            "processingType": "realtime",
            "nodes": [
                {
                    "id": "in",
                    "name": "In",
                    "type": "onlineCollector",
                    "config": {"collectorId": str(collector.pk)},
                },
                {"id": "slow", "name": "Slow", "type": "script", "config": {"expression": expression}},
            ],
            "edges": [{"source": "in", "target": "slow"}],
        },
    ).stream


def send(api, collector, records: list[dict]) -> int:
    response = api.post(
        f"/online-collection/collectors/{collector.pk}/data",
        json.dumps({"data": records}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return CollectedBatch.objects.filter(collector=collector).order_by("-sequence")[0].sequence


def limits(monkeypatch, *, soft: float | None, hard: float) -> None:
    """The task's limits where the message is sent (this process: the hook that queues a run after
    a send). They travel in the message, as STREAM_RUN_* set them in production; the worker gets
    the same settings in its environment. Celery caches a task's send options the first time it
    is sent (``_exec_options``), so the cache is cleared too: an earlier test's send would
    otherwise carry the production limits into this one's messages."""
    task = app.tasks["streams.run_stream"]
    monkeypatch.setattr(task, "soft_time_limit", soft)
    monkeypatch.setattr(task, "time_limit", hard)
    monkeypatch.setattr(task, "_exec_options", None)


def offset_of(stream, collector) -> int | None:
    found = ConsumerOffset.objects.filter(collector=collector, consumer=f"stream:{stream.pk}").first()
    return found.last_sequence if found else None


def test_every_task_has_soft_and_hard_time_limits_from_the_settings():
    assert (app.conf.task_soft_time_limit, app.conf.task_time_limit) == (120, 180)
    assert settings.CELERY_TASK_ANNOTATIONS["streams.run_stream"] == {"soft_time_limit": 60, "time_limit": 90}
    assert app.tasks["streams.run_stream"].soft_time_limit == 60
    assert app.tasks["streams.run_stream"].time_limit == 90


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_run_past_its_soft_time_limit_is_recorded_failed_with_the_reason(
    account, tmp_path, pool, monkeypatch
):
    api = client_for(account)
    collector = Collector.objects.create(account=account, name="slow", status=Collector.Status.ACTIVE)
    stream = realtime_stream(account, collector, SLOW_SCRIPT, "Slow")
    limits(monkeypatch, soft=1, hard=30)
    environment = {**GENEROUS_BUDGET, "STREAM_RUN_SOFT_TIME_LIMIT": "1", "STREAM_RUN_TIME_LIMIT": "30"}
    with running_worker(tmp_path, pool=pool, **environment) as worker:
        sequence = send(api, collector, [{"L": list(range(300))}] * 300)
        run = wait_for(
            lambda: StreamRun.objects.filter(stream=stream, status=StreamRun.Status.FAILED).first(),
            "the run to fail at its soft time limit",
        )
        assert worker.poll() is None
    assert run.error == TIME_LIMIT_ERROR
    assert (run.finished_at - run.started_at).total_seconds() < 5
    assert offset_of(stream, collector) < sequence  # the batch was not consumed: the retry reads it
