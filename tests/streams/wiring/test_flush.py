"""Flushed metered records: a Meter processor flushing by stream execution, and the durable
outbox (``FlushDelivery``) that takes every flush's records to the node's downstream nodes."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import textwrap

import pytest
import time_machine
from django.db import OperationalError

from metering.flush import meters_flush_all_due
from metering.models import Meter, MeteredRecord
from streams.engine import deliveries
from streams.engine import services as engine_services
from streams.models import FlushDelivery, InspectRecord, OutputDelivery, StreamRun
from streams.tasks import deliver_flushed_records, sweep_flush_deliveries
from tests.streams.engine.conftest import Receiver
from tests.streams.wiring.test_wiring import T0, make, meter_config, send, stream_config, values
from tests.support.celery_worker import ROOT, worker_database_url

pytestmark = pytest.mark.django_db

RUN_AT = T0 + datetime.timedelta(minutes=1)


@pytest.fixture
def receiver(settings):
    """A real HTTP server on 127.0.0.1 (private targets allowed for the test)."""
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    server = Receiver()
    yield server
    server.close()


def with_peek(config, after="meter"):
    config["nodes"].append({"id": "peek", "name": "Peek", "type": "inspect", "config": {"keepLast": 100}})
    config["edges"].append({"source": after, "target": "peek"})
    return config


def execution_stream(account, solution, collector, **meter_options):
    config = with_peek(
        stream_config(collector.pk, meter=meter_config(flush="streamExecution", **meter_options))
    )
    return make(account, solution, config)


def flushed(meter_type, user_id):
    return [
        (float(r.value), r.meter_metadata["recordCount"], r.execution_ref != "")
        for r in MeteredRecord.objects.filter(meter_type_id=meter_type.pk, user_id=user_id).order_by(
            "created_at"
        )
    ]


def inspected_metered(stream):
    """What the inspect node after the meter node received of metered records (not raw ones)."""
    return sorted(
        (r.record["userId"], r.record["meterTypeName"], r.record["value"])
        for r in InspectRecord.objects.filter(stream=stream, node_id="peek")
        if "meterTypeName" in r.record
    )


def test_each_run_flushes_and_resets_the_meters_it_counted_without_ending_their_period(
    account, solution, collector, meters
):
    premium, standard = meters
    with time_machine.travel(RUN_AT, tick=False):
        stream = execution_stream(account, solution, collector, groupBy=["region"], carryLast=["region"])
        period = Meter.objects.filter(meter_type=premium, user_id="u1").values_list(
            "period_start", "period_end"
        )[0]
        sequence = send(
            account,
            collector,
            [
                {"userId": "u1", "value": 5, "plan": "pro", "region": "eu"},
                {"userId": "u1", "value": 2, "plan": "free", "region": "us"},
                {"userId": "u1", "value": 1, "plan": "pro", "region": "us"},
            ],
        )
        run = engine_services.stream_run_collected(stream_id=stream.pk)
    assert run.status == "SUCCEEDED"
    # The meters the run counted are back to empty, in the same period; u2's were not touched.
    assert values(premium) == [("u1", 0.0, 0), ("u2", 0.0, 0)]
    assert values(standard) == [("u1", 0.0, 0), ("u2", 0.0, 0)]
    u1 = Meter.objects.get(meter_type=premium, user_id="u1")
    assert (u1.period_start, u1.period_end) == period
    assert (u1.groups, u1.group_breakdowns, u1.carry_last, u1.carry_last_at) == ([], [], {}, None)
    record = MeteredRecord.objects.get(meter_type_id=premium.pk, user_id="u1")
    assert (float(record.value), record.groups, record.carry_last) == (
        6.0,
        [{"key": "premium", "value": 6, "recordCount": 2}],
        {"region": "us"},
    )
    assert (record.period_start, record.period_end, record.created_at) == (*period, RUN_AT)
    assert record.meter_metadata == {
        "recordCount": 2,
        "lastIngestedAt": "2026-03-01T09:31:00.000Z",
        "streamExecution": f"{stream.pk}/meter/batch:{sequence}",
    }
    assert flushed(standard, "u1") == [(2.0, 1, True)]
    assert MeteredRecord.objects.filter(user_id="u2").count() == 0

    # The records wait in the outbox, written by the run; the worker delivers them downstream.
    assert list(FlushDelivery.objects.values_list("node_id", "record_count")) == [("meter", 2)]
    assert deliver_flushed_records.apply(args=[str(stream.pk), "meter"]).get() == 2
    assert inspected_metered(stream) == [("u1", "Premium calls", 6), ("u1", "Standard calls", 2)]

    # The next run flushes what it counted, and only that.
    with time_machine.travel(RUN_AT + datetime.timedelta(minutes=5), tick=False):
        send(account, collector, [{"userId": "u1", "value": 3, "plan": "pro", "region": "eu"}])
        engine_services.stream_run_collected(stream_id=stream.pk)
    assert flushed(premium, "u1") == [(6.0, 2, True), (3.0, 1, True)]
    assert flushed(standard, "u1") == [(2.0, 1, True)]
    assert sweep_flush_deliveries.apply().get() == 1
    assert inspected_metered(stream) == [
        ("u1", "Premium calls", 3),
        ("u1", "Premium calls", 6),
        ("u1", "Standard calls", 2),
    ]

    # At period end every meter gets its period record (nothing left: value 0); the node's
    # downstream nodes get none of them, since the executions delivered everything already.
    meters_flush_all_due(now=period[1] + datetime.timedelta(seconds=1))
    assert flushed(premium, "u1") == [(6.0, 2, True), (3.0, 1, True), (0.0, 0, False)]
    assert FlushDelivery.objects.count() == 0
    assert Meter.objects.get(meter_type=premium, user_id="u1").period_start == period[1]


def test_a_failed_run_flushes_nothing_and_its_retry_flushes_once(
    account, solution, collector, meters, monkeypatch
):
    premium, _ = meters
    from django.db import OperationalError

    from streams.engine import collection_seam

    with time_machine.travel(RUN_AT, tick=False):
        stream = execution_stream(account, solution, collector)
        send(account, collector, [{"userId": "u1", "value": 5, "plan": "pro"}])
        advance = collection_seam.consumer_offset_advance

        def fail_after_the_flush(**kwargs):
            raise OperationalError("the connection dropped after the meter node flushed")

        monkeypatch.setattr(collection_seam, "consumer_offset_advance", fail_after_the_flush)
        failed = engine_services.stream_run_collected(stream_id=stream.pk)
        assert failed.status == "FAILED"
        assert (MeteredRecord.objects.count(), FlushDelivery.objects.count()) == (0, 0)
        monkeypatch.setattr(collection_seam, "consumer_offset_advance", advance)
        assert engine_services.stream_run_collected(stream_id=stream.pk) is None  # backing off for 5 s
    with time_machine.travel(RUN_AT + datetime.timedelta(seconds=5.1), tick=False):
        assert engine_services.stream_run_collected(stream_id=stream.pk).status == "SUCCEEDED"
        assert engine_services.stream_run_collected(stream_id=stream.pk) is None
    assert flushed(premium, "u1") == [(5.0, 1, True)]
    assert values(premium) == [("u1", 0.0, 0), ("u2", 0.0, 0)]
    assert FlushDelivery.objects.get().record_count == 1


def metered_bodies(target: Receiver):
    """The requests that carried metered records (the run itself forwards the routed records)."""
    return [
        [(record["userId"], record["value"]) for record in body]
        for body in target.bodies()
        if body and "meterTypeName" in body[0]
    ]


def test_a_failed_delivery_waits_and_is_retried_in_order_until_delivered_once(
    account, solution, collector, meters, receiver, monkeypatch
):
    config = stream_config(collector.pk, meter=meter_config(flush="streamExecution"))
    config["nodes"].append(
        {"id": "bill", "name": "Bill", "type": "httpForwarder", "config": {"url": receiver.url}}
    )
    config["edges"].append({"source": "meter", "target": "bill"})
    queue = deliveries.output_records_queue

    def database_gone(**kwargs):
        raise OperationalError("the connection dropped")

    with time_machine.travel(RUN_AT, tick=False):
        stream = make(account, solution, config)
        send(account, collector, [{"userId": "u1", "value": 5, "plan": "pro"}])
        engine_services.stream_run_collected(stream_id=stream.pk)
        assert metered_bodies(receiver) == []  # the run queued its metered records in the outbox
        monkeypatch.setattr(deliveries, "output_records_queue", database_gone)
        assert deliver_flushed_records.apply(args=[str(stream.pk), "meter"]).get() == 0
        first = FlushDelivery.objects.get()
        assert (first.attempts, first.next_attempt_at) == (1, RUN_AT + datetime.timedelta(seconds=5))
        assert first.last_error == "database error: OperationalError"
        monkeypatch.setattr(deliveries, "output_records_queue", queue)
        # A later flush queues behind it and is not delivered before it.
        send(account, collector, [{"userId": "u2", "value": 7, "plan": "pro"}])
        engine_services.stream_run_collected(stream_id=stream.pk)
        assert FlushDelivery.objects.count() == 2
        assert sweep_flush_deliveries.apply().get() == 0
        assert deliver_flushed_records.apply(args=[str(stream.pk), "meter"]).get() == 0
    with time_machine.travel(RUN_AT + datetime.timedelta(seconds=6), tick=False):
        assert sweep_flush_deliveries.apply().get() == 2
        assert sweep_flush_deliveries.apply().get() == 0
    assert FlushDelivery.objects.count() == 0
    runs = StreamRun.objects.filter(stream=stream, trigger="flush").order_by("started_at")
    assert [(run.status, run.records_in) for run in runs] == [("FAILED", 0), ("SUCCEEDED", 2)]
    # Both flushes reached the forwarder in order, in one delivery run: one request, once sent.
    assert metered_bodies(receiver) == []
    deliveries.output_deliveries_send(stream_id=stream.pk, node_id="bill")
    assert metered_bodies(receiver) == [[("u1", 5), ("u2", 7)]]


def test_a_target_down_delays_the_flushed_records_not_the_flush(
    account, solution, collector, meters, receiver
):
    config = stream_config(collector.pk, meter=meter_config(flush="streamExecution"))
    config["nodes"].append(
        {"id": "bill", "name": "Bill", "type": "httpForwarder", "config": {"url": receiver.url}}
    )
    config["edges"].append({"source": "meter", "target": "bill"})
    receiver.status = 503
    with time_machine.travel(RUN_AT, tick=False):
        stream = make(account, solution, config)
        send(account, collector, [{"userId": "u1", "value": 5, "plan": "pro"}])
        engine_services.stream_run_collected(stream_id=stream.pk)
        assert deliver_flushed_records.apply(args=[str(stream.pk), "meter"]).get() == 1
    assert FlushDelivery.objects.count() == 0  # the flush reached the forwarder, which queued it
    assert deliveries.output_deliveries_send(stream_id=stream.pk, node_id="bill").failed == 1
    receiver.status = 200
    OutputDelivery.objects.update(next_attempt_at=RUN_AT)
    # The run's own routed record, then the flushed metered record (the first was answered 503).
    assert deliveries.output_deliveries_send(stream_id=stream.pk, node_id="bill").delivered == 2
    assert metered_bodies(receiver) == [[("u1", 5)]]
    assert len(receiver.requests) == 3


@pytest.mark.django_db(transaction=True)
def test_a_process_that_dies_between_the_flush_commit_and_the_delivery_loses_nothing(
    account, solution, collector, meters
):
    """A real process flushes at period end and is killed (``os._exit``) right after the commit,
    in the very callback that would wake the delivery worker: the outbox row it committed is
    delivered by the sweep, exactly once."""
    premium, _ = meters
    with time_machine.travel(RUN_AT, tick=False):
        stream = make(account, solution, with_peek(stream_config(collector.pk)))
        send(account, collector, [{"userId": "u1", "value": 5, "plan": "pro"}])
        engine_services.stream_run_collected(stream_id=stream.pk)
    InspectRecord.objects.all().delete()
    period_end = Meter.objects.get(meter_type=premium, user_id="u1").period_end
    script = textwrap.dedent(f"""
        import datetime, os, django
        django.setup()
        from streams import tasks
        tasks.deliver_flushed_records.delay = lambda *args: os._exit(9)  # dies after the commit
        from metering.flush import meters_flush_all_due
        meters_flush_all_due(now=datetime.datetime.fromisoformat("{period_end.isoformat()}")
                             + datetime.timedelta(seconds=1))
        os._exit(0)
    """)
    env = {**os.environ, "DATABASE_URL": worker_database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    died = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert died.returncode == 9, died.stderr.decode()[-2000:]
    assert MeteredRecord.objects.filter(execution_ref="").count() == 4  # the flush committed
    assert FlushDelivery.objects.get().record_count == 4  # and so did its delivery
    assert InspectRecord.objects.count() == 0  # which never reached the downstream nodes
    assert sweep_flush_deliveries.apply().get() == 4
    assert sweep_flush_deliveries.apply().get() == 0
    assert inspected_metered(stream) == [
        ("u1", "Premium calls", 5),
        ("u1", "Standard calls", 0),
        ("u2", "Premium calls", 0),
        ("u2", "Standard calls", 0),
    ]
    assert FlushDelivery.objects.count() == 0
