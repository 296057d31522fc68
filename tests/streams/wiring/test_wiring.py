"""The engine wired to the collection log and the usage ledger (in-process; the end-to-end test
with a real worker is test_end_to_end.py)."""

from __future__ import annotations

import datetime
import json

import pytest
import time_machine
from django_celery_beat.models import PeriodicTask

from collection.models import CollectedBatch, ConsumerOffset
from collection.services import collected_batch_append
from metering.corrections import data_correction_reprocess
from metering.models import DataCorrection, Meter
from metering.services import meter_create, meter_type_create
from streams import services as stream_services
from streams.engine import services as engine_services
from streams.engine.selectors import realtime_streams_behind
from streams.engine.wiring import realtime_readers
from streams.models import StreamRun
from streams.tasks import catch_up_realtime
from tests.streams.conftest import ACTOR

pytestmark = pytest.mark.django_db

T0 = datetime.datetime(2026, 3, 1, 9, 30, tzinfo=datetime.UTC)
KEY = "11111111-2222-3333-4444-555555555555"


def meter_config(**extra):
    return {
        "meterKey": KEY,
        "guidingRules": [
            {
                "category": "premium",
                "conditions": [{"field": "plan", "type": "string", "operator": "equals", "value": "pro"}],
            },
            {"category": "standard", "conditions": []},
        ],
        **extra,
    }


def stream_config(collector_id, name="Wired", processing_type="realtime", meter=None):
    return {
        "name": name,
        "processingType": processing_type,
        "nodes": [
            {
                "id": "in",
                "name": "In",
                "type": "onlineCollector",
                "config": {"collectorId": str(collector_id)},
            },
            {"id": "meter", "name": "Meter", "type": "meter", "config": meter or meter_config()},
        ],
        "edges": [{"source": "in", "target": "meter"}],
    }


def _meters(account):
    premium = meter_type_create(
        account_id=account.pk,
        name="Premium calls",
        unit="call",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        category="premium",
        active_from=T0,
    )
    standard = meter_type_create(
        account_id=account.pk,
        name="Standard calls",
        unit="call",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        category="standard",
        active_from=T0,
    )
    for user_id in ("u1", "u2"):
        for meter_type in (premium, standard):
            meter_create(account_id=account.pk, meter_key=KEY, user_id=user_id, meter_type_id=meter_type.pk)
    return premium, standard


def values(meter_type):
    return sorted(
        (m.user_id, float(m.value), m.record_count) for m in Meter.objects.filter(meter_type=meter_type)
    )


def send(account, collector, data):
    result = collected_batch_append(
        account_id=account.pk, collector_id=collector.pk, payload=json.dumps(data)
    )
    return CollectedBatch.objects.get(ingestion_id=result.ingestion_id).sequence


def make(account, solution, config):
    return stream_services.stream_import(
        account=account, solution_id=solution.pk, actor=ACTOR, stream_config=config
    ).stream


def test_records_are_routed_by_guiding_rule_to_the_meters_of_its_category(
    account, solution, collector, meters
):
    premium, standard = meters
    with time_machine.travel(T0 + datetime.timedelta(minutes=1), tick=False):
        stream = make(
            account,
            solution,
            stream_config(collector.pk, meter=meter_config(groupBy=["region"], carryLast=["region"])),
        )
        send(
            account,
            collector,
            [
                {"userId": "u1", "value": 5, "plan": "pro", "region": "eu"},
                {"userId": "u1", "value": 2, "plan": "free", "region": "us"},
                {"userId": "u2", "value": 7, "plan": "pro", "region": "us"},
                {"userId": "u1", "value": 1, "plan": "pro", "region": "us"},
            ],
        )
        run = engine_services.stream_run_collected(stream_id=stream.pk)
    assert (run.status, run.records_in, run.records_out, run.records_rejected) == ("SUCCEEDED", 4, 4, 0)
    assert values(premium) == [("u1", 6.0, 2), ("u2", 7.0, 1)]
    assert values(standard) == [("u1", 2.0, 1), ("u2", 0.0, 0)]
    u1 = Meter.objects.get(meter_type=premium, user_id="u1")
    assert u1.groups == [{"key": "premium", "value": 6, "recordCount": 2}]
    assert sorted((b["fields"]["region"], b["value"]) for b in u1.group_breakdowns) == [("eu", 5), ("us", 1)]
    assert u1.carry_last == {"region": "us"}


def test_a_retried_run_counts_each_record_once(account, solution, collector, meters, monkeypatch):
    premium, _ = meters
    from streams.engine import collection_seam

    with time_machine.travel(T0 + datetime.timedelta(minutes=1), tick=False):
        stream = make(account, solution, stream_config(collector.pk))
        send(account, collector, [{"userId": "u1", "value": 5, "plan": "pro"}])
        advance = collection_seam.consumer_offset_advance

        def fail_after_metering(**kwargs):
            from django.db import OperationalError

            raise OperationalError("the connection dropped after the ledger wrote")

        monkeypatch.setattr(collection_seam, "consumer_offset_advance", fail_after_metering)
        failed = engine_services.stream_run_collected(stream_id=stream.pk)
        assert (failed.status, failed.error) == ("FAILED", "database error: OperationalError")
        assert values(premium) == [("u1", 0.0, 0), ("u2", 0.0, 0)]
        monkeypatch.setattr(collection_seam, "consumer_offset_advance", advance)
        assert engine_services.stream_run_collected(stream_id=stream.pk) is None  # backing off for 5 s
    with time_machine.travel(T0 + datetime.timedelta(minutes=1, seconds=5), tick=False):
        retried = engine_services.stream_run_collected(stream_id=stream.pk)
        assert retried.status == "SUCCEEDED"
        assert engine_services.stream_run_collected(stream_id=stream.pk) is None
    assert values(premium) == [("u1", 5.0, 1), ("u2", 0.0, 0)]


def test_a_record_id_counts_once_across_batches(account, solution, collector, meters):
    premium, _ = meters
    with time_machine.travel(T0 + datetime.timedelta(minutes=1), tick=False):
        stream = make(account, solution, stream_config(collector.pk))
        send(account, collector, [{"userId": "u1", "value": 5, "plan": "pro", "idempotencyKey": "e-1"}])
        send(
            account,
            collector,
            [
                {"userId": "u1", "value": 5, "plan": "pro", "idempotencyKey": "e-1"},
                {"userId": "u1", "value": 3, "plan": "pro", "idempotencyKey": "e-2"},
            ],
        )
        engine_services.stream_run_collected(stream_id=stream.pk, batch_limit=1)
        engine_services.stream_run_collected(stream_id=stream.pk, batch_limit=1)
    assert values(premium) == [("u1", 8.0, 2), ("u2", 0.0, 0)]


def test_refused_records_go_to_data_correction_and_reprocessing_meters_them(
    account, solution, collector, meters
):
    premium, _ = meters
    with time_machine.travel(T0 + datetime.timedelta(minutes=1), tick=False):
        stream = make(account, solution, stream_config(collector.pk))
        send(
            account,
            collector,
            [
                {"value": 5, "plan": "pro"},
                {"userId": "u9", "value": 4, "plan": "pro"},
                {"userId": "u1", "value": "many", "plan": "pro"},
            ],
        )
        run = engine_services.stream_run_collected(stream_id=stream.pk)
        assert (run.records_out, run.records_rejected) == (0, 3)
        assert [r["reason"] for r in run.rejections] == [  # in the order the records came
            "userId is required (a non-empty string)",
            f"no meter of meterKey {KEY} for this userId in category premium",
            "value must be a number",
        ]
        corrections = {c.record.get("userId"): c for c in DataCorrection.objects.filter(account=account)}
        assert sorted((str(k), c.reason, c.node, c.source) for k, c in corrections.items()) == [
            ("None", "MISSING_USER_ID", "meter", "stream"),
            ("u1", "NON_NUMERIC_VALUE", "meter", "stream"),
            ("u9", "NO_MATCHING_METER", "meter", "stream"),
        ]
        assert corrections["u9"].source_ref == f"{stream.pk}/{run.pk}"
        # u9 gets a meter; reprocessing sends the record through the meter node's routing again.
        meter_create(account_id=account.pk, meter_key=KEY, user_id="u9", meter_type_id=premium.pk)
        reprocessed = data_correction_reprocess(correction=corrections["u9"])
        assert reprocessed.status == "REPROCESSED"
        still = data_correction_reprocess(correction=corrections["u1"])
        assert (still.status, still.reason) == ("OPEN", "NON_NUMERIC_VALUE")
    assert values(premium) == [("u1", 0.0, 0), ("u2", 0.0, 0), ("u9", 4.0, 1)]


def test_two_streams_on_one_collector_each_keep_their_own_offset(account, solution, collector, meters):
    premium, _ = meters
    with time_machine.travel(T0 + datetime.timedelta(minutes=1), tick=False):
        first = make(account, solution, stream_config(collector.pk, name="First"))
        second = make(
            account,
            solution,
            stream_config(
                collector.pk,
                name="Second",
                meter=meter_config(meterKey="22222222-2222-3333-4444-555555555555"),
            ),
        )
        meter_create(
            account_id=account.pk,
            meter_key="22222222-2222-3333-4444-555555555555",
            user_id="u1",
            meter_type_id=premium.pk,
        )
        sequences = [
            send(account, collector, [{"userId": "u1", "value": n, "plan": "pro"}]) for n in (1, 2, 3)
        ]
        one = engine_services.stream_run_collected(stream_id=first.pk, batch_limit=2)
        two = engine_services.stream_run_collected(stream_id=second.pk, batch_limit=1)
        assert (one.source_first_sequence, one.source_last_sequence) == (sequences[0], sequences[1])
        assert (two.source_first_sequence, two.source_last_sequence) == (sequences[0], sequences[0])
        offsets = dict(
            ConsumerOffset.objects.filter(collector=collector).values_list("consumer", "last_sequence")
        )
        assert offsets == {f"stream:{first.pk}": sequences[1], f"stream:{second.pk}": sequences[0]}
        assert realtime_streams_behind() == sorted([str(first.pk), str(second.pk)])
        engine_services.stream_run_collected(stream_id=first.pk)
        engine_services.stream_run_collected(stream_id=second.pk)
        assert realtime_streams_behind() == []
    by_key = sorted(
        (m.meter_key, float(m.value)) for m in Meter.objects.filter(meter_type=premium, user_id="u1")
    )
    assert by_key == [(KEY, 6.0), ("22222222-2222-3333-4444-555555555555", 6.0)]


def test_a_stored_batch_wakes_the_realtime_streams_after_commit(
    account, solution, collector, meters, monkeypatch, django_capture_on_commit_callbacks
):
    from streams import tasks

    sent = []
    monkeypatch.setattr(tasks.run_stream, "delay", lambda *args: sent.append(args))
    realtime = make(account, solution, stream_config(collector.pk, name="Live"))
    make(
        account,
        solution,
        stream_config(
            collector.pk,
            name="Nightly",
            processing_type="batch",
            meter=meter_config(meterKey="33333333-2222-3333-4444-555555555555"),
        ),
    )
    realtime_readers.__globals__["_readers"].clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        send(account, collector, {"userId": "u1", "value": 1})
    assert sent == []  # nothing before the batch commits
    for callback in callbacks:
        callback()
    assert sent == [(str(realtime.pk), "realtime")]
    assert catch_up_realtime() == 1  # the sweep finds it behind too (a lost enqueue is caught up)


def test_batch_streams_get_a_beat_schedule_and_lose_it_when_deleted(account, solution, collector):
    config = stream_config(collector.pk, name="Nightly", processing_type="batch")
    config["annotation"] = {"scheduleIntervalSeconds": 600}
    stream = make(account, solution, config)
    task = PeriodicTask.objects.get(name=f"stream:{stream.pk}")
    assert (task.task, json.loads(task.args), task.interval.every, task.interval.period, task.enabled) == (
        "streams.run_stream",
        [str(stream.pk), "schedule"],
        600,
        "seconds",
        True,
    )
    assert ConsumerOffset.objects.filter(collector=collector, consumer=f"stream:{stream.pk}").count() == 1
    stream_services.stream_delete(stream=stream)
    assert not PeriodicTask.objects.filter(name=f"stream:{stream.pk}").exists()
    assert not ConsumerOffset.objects.filter(collector=collector).exists()
    assert StreamRun.objects.count() == 0


def test_flushed_metered_records_are_queued_with_the_flush_and_delivered_downstream_after_commit(
    account, solution, collector, meters, monkeypatch, django_capture_on_commit_callbacks
):
    from metering.flush import meters_flush_all_due
    from streams import tasks
    from streams.models import FlushDelivery, InspectRecord

    premium, _ = meters
    woken = []
    monkeypatch.setattr(tasks.deliver_flushed_records, "delay", lambda *args: woken.append(args))
    config = stream_config(collector.pk)
    config["nodes"].append({"id": "peek", "name": "Peek", "type": "inspect", "config": {}})
    config["edges"].append({"source": "meter", "target": "peek"})
    with time_machine.travel(T0 + datetime.timedelta(minutes=1), tick=False):
        stream = make(account, solution, config)
        send(account, collector, [{"userId": "u1", "value": 5, "plan": "pro"}])
        engine_services.stream_run_collected(stream_id=stream.pk)
    InspectRecord.objects.all().delete()  # what the run itself inspected
    period_end = Meter.objects.get(meter_type=premium, user_id="u1").period_end
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        meters_flush_all_due(now=period_end + datetime.timedelta(seconds=1))
    # The outbox row is written in the flush's transaction; the worker is woken after commit.
    assert list(FlushDelivery.objects.values_list("stream_id", "node_id", "record_count")) == [
        (stream.pk, "meter", 4)
    ]
    assert woken == []
    for callback in callbacks:
        callback()
    assert woken == [(str(stream.pk), "meter")]
    assert tasks.deliver_flushed_records.apply(args=woken[0]).get() == 4
    assert tasks.deliver_flushed_records.apply(args=woken[0]).get() == 0  # delivered once
    inspected = sorted(
        (r.record["userId"], r.record["meterTypeName"], r.record["value"])
        for r in InspectRecord.objects.filter(stream=stream, node_id="peek")
    )
    assert inspected == [
        ("u1", "Premium calls", 5),
        ("u1", "Standard calls", 0),
        ("u2", "Premium calls", 0),
        ("u2", "Standard calls", 0),
    ]
    assert FlushDelivery.objects.count() == 0
    run = StreamRun.objects.get(stream=stream, trigger="flush")
    assert (run.status, run.records_in, run.node_counts) == (
        "SUCCEEDED",
        4,
        {"meter": {"in": 0, "out": 4, "rejected": 0}, "peek": {"in": 4, "out": 4, "rejected": 0}},
    )


def test_a_run_reads_batches_in_order_up_to_its_byte_budget_and_no_run_is_recorded_for_nothing(
    account, solution, collector, meters, monkeypatch
):
    premium, _ = meters
    with time_machine.travel(T0 + datetime.timedelta(minutes=1), tick=False):
        stream = make(account, solution, stream_config(collector.pk))
        sequences = [
            send(account, collector, [{"userId": "u1", "value": n, "plan": "pro"}]) for n in (1, 2, 3)
        ]
        size = CollectedBatch.objects.get(sequence=sequences[0]).size_bytes
        monkeypatch.setattr(engine_services, "COLLECTED_BYTES_PER_RUN", 2 * size)
        first = engine_services.stream_run_collected(stream_id=stream.pk)
        second = engine_services.stream_run_collected(stream_id=stream.pk)
        monkeypatch.setattr(engine_services, "COLLECTED_BYTES_PER_RUN", 1)  # the first batch is always read
        assert engine_services.stream_run_collected(stream_id=stream.pk) is None
        send(account, collector, [{"userId": "u1", "value": 4, "plan": "pro"}])
        third = engine_services.stream_run_collected(stream_id=stream.pk)
    assert [(run.source_first_sequence, run.source_last_sequence) for run in (first, second)] == [
        (sequences[0], sequences[1]),
        (sequences[2], sequences[2]),
    ]
    assert third.records_in == 1
    assert StreamRun.objects.filter(stream=stream).count() == 3  # nothing was recorded for the empty call
    assert values(premium) == [("u1", 10.0, 4), ("u2", 0.0, 0)]
