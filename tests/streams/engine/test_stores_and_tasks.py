"""Aggregation stores follow the imports; the Celery tasks are thin and safe to run twice; beat
schedules are registered in django-celery-beat's tables."""

import datetime
import importlib

import pytest
import time_machine
from django.apps import apps
from django_celery_beat.models import PeriodicTask

from streams import services
from streams.engine import services as engine_services
from streams.engine.keys import session_key
from streams.exceptions import AggregationStoreConflict
from streams.models import AggregationSession, AggregationStore, StreamDedupKey, StreamRun
from streams.tasks import purge_dedup_keys, run_stream, sweep_session_timeouts
from tests.streams.engine.conftest import STORE_ID, chain

pytestmark = pytest.mark.django_db


def aggregator(key_fields, node_type="scriptAggregator", name="Sessions"):
    config = (
        {"storeId": STORE_ID, "keyFields": key_fields, "timeoutSeconds": 60, "script": "{'n': 1}"}
        if node_type == "scriptAggregator"
        else {
            "storeId": STORE_ID,
            "keyFields": key_fields,
            "aggregations": [{"target": "n", "function": "count"}],
        }
    )
    return chain(("agg", node_type, config), name=name)


def test_streams_share_a_store_only_with_the_same_kind_and_key_fields(make_stream, account):
    make_stream(aggregator(["a", "b"]))
    twin = make_stream(aggregator(["a", "b"], name="Twin"))
    assert AggregationStore.objects.filter(account=account).count() == 1
    with pytest.raises(AggregationStoreConflict):
        make_stream(aggregator(["b", "a"], name="Reordered"))
    with pytest.raises(AggregationStoreConflict):
        make_stream(aggregator(["a", "b"], node_type="dataAggregator", name="Other kind"))
    assert AggregationStore.objects.get(account=account).stream_id == twin.pk  # the latest declaration


def test_an_import_with_a_store_conflict_is_409_and_saves_nothing(api, make_stream, solution):
    make_stream(aggregator(["a"]))
    response = api.post(
        "/streams/import",
        {"solutionId": str(solution.pk), "streamConfig": aggregator(["z"], name="Clash")},
        format="json",
    )
    assert (response.status_code, response.json()["code"]) == (409, "AGGREGATION_STORE_CONFLICT")
    assert not services.Stream.objects.filter(name="Clash").exists()


def test_the_only_stream_of_a_store_may_change_its_key_fields(make_stream, account):
    make_stream(aggregator(["a"]))
    make_stream(aggregator(["a", "b"]), on_name_conflict="overwrite")
    assert AggregationStore.objects.get(account=account).key_fields == ["a", "b"]


def test_other_accounts_have_their_own_store_with_the_same_id(make_stream, other_account, account):
    make_stream(aggregator(["a"]))
    solution = services.solution_create(account=other_account, name="Theirs")
    services.stream_import(
        account=other_account,
        solution_id=solution.pk,
        actor={"type": "user", "id": "x"},
        stream_config=aggregator(["z"]),
    )
    assert sorted(AggregationStore.objects.values_list("key_fields", flat=True)) == [["a"], ["z"]]


def test_a_store_no_stream_declares_is_deleted_with_its_sessions(make_stream, account):
    stream = make_stream(aggregator(["a"]))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}])
    assert AggregationSession.objects.count() == 1
    make_stream(
        chain(("peek", "inspect", {}), name="Sessions"),
        on_name_conflict="overwrite",
        allow_node_deletion=True,
    )
    assert (AggregationStore.objects.count(), AggregationSession.objects.count()) == (0, 0)
    kept = make_stream(aggregator(["a"], name="Kept"))
    services.stream_delete(stream=kept)
    assert AggregationStore.objects.count() == 0


def test_the_sweep_task_twice_emits_once(make_stream):
    stream = make_stream(aggregator(["a"]))
    t0 = datetime.datetime(2025, 5, 5, 5, 5, tzinfo=datetime.UTC)
    with time_machine.travel(t0, tick=False):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}, {"a": 2}])
    with time_machine.travel(t0 + datetime.timedelta(seconds=60), tick=False):
        assert (sweep_session_timeouts.apply().get(), sweep_session_timeouts.apply().get()) == (2, 0)


def test_the_purge_task_forgets_expired_dedup_keys_only(make_stream):
    stream = make_stream(chain(("dedup", "deduplicate", {"keyFields": ["id"], "windowSeconds": 60})))
    t0 = datetime.datetime(2025, 5, 5, 5, 5, tzinfo=datetime.UTC)
    with time_machine.travel(t0, tick=False):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"id": 1}])
    with time_machine.travel(t0 + datetime.timedelta(seconds=30), tick=False):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"id": 2}])
    with time_machine.travel(t0 + datetime.timedelta(seconds=60), tick=False):
        assert (purge_dedup_keys.apply().get(), purge_dedup_keys.apply().get()) == (1, 0)
    assert list(StreamDedupKey.objects.values_list("key", flat=True)) == [session_key(["2"])]


def test_run_stream_without_collected_batches_is_a_no_op(make_stream):
    stream = make_stream(aggregator(["a"]))
    assert run_stream.apply(args=[str(stream.pk), "realtime"]).get() is None
    assert StreamRun.objects.count() == 0


def test_run_stream_of_a_stream_deleted_since_it_was_queued_is_a_no_op():
    assert run_stream.apply(args=["3b1f3c57-6a61-4d59-9a3e-111111111111", "realtime"]).get() is None
    assert StreamRun.objects.count() == 0


def test_the_beat_schedules_are_registered_by_a_migration():
    migration = importlib.import_module("streams.migrations.0003_engine_beat_schedule")
    migration.register(apps, None)
    migration.register(apps, None)  # twice: still one row each
    importlib.import_module("streams.migrations.0004_realtime_catch_up_schedule").register(apps, None)
    importlib.import_module("streams.migrations.0007_output_delivery_outbox").register(apps, None)
    tasks = {
        task.task: (task.interval.every, task.interval.period, task.enabled)
        for task in PeriodicTask.objects.filter(task__startswith="streams.")
    }
    assert tasks == {
        "streams.sweep_session_timeouts": (30, "seconds", True),
        "streams.purge_dedup_keys": (1, "hours", True),
        "streams.catch_up_realtime": (5, "seconds", True),
        "streams.sweep_flush_deliveries": (10, "seconds", True),
        "streams.fail_abandoned_runs": (1, "minutes", True),
        "streams.sweep_output_deliveries": (5, "seconds", True),
        "streams.purge_delivered_outputs": (1, "hours", True),
    }
