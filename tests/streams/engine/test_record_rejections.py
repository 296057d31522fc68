"""One bad record in a processing node is rejected with its reason and the run goes on; a run
that fails as a whole (what affects every record) backs off instead of retrying every few
seconds."""

import datetime

import pytest
import time_machine

from metering.models import Meter
from metering.services import meter_create, meter_type_create
from streams.engine import services as engine_services
from streams.models import Stream, StreamRun
from tests.streams.engine.conftest import chain
from tests.streams.engine.test_runs import collection_log  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

T0 = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)

SHAPE_AND_METER = chain(
    ("shape", "map", {"fields": {"userId": "record.customer", "value": "record.amount / record.parts"}}),
    ("meter", "meter", {"meterKey": "calls"}),
    name="Shape and meter",
)


@pytest.fixture
def calls_meters(account):
    with time_machine.travel(T0, tick=False):
        calls = meter_type_create(
            account_id=account.pk,
            name="Calls",
            unit="call",
            aggregation="SUM",
            reset_cron="0 0 1 * *",
            timezone="Etc/UTC",
            active_from=T0,
        )
        for user_id in ("c1", "c2"):
            meter_create(account_id=account.pk, meter_key="calls", user_id=user_id, meter_type_id=calls.pk)


def values() -> dict[str, int]:
    return {user_id: int(value) for user_id, value in Meter.objects.values_list("user_id", "value")}


def test_a_script_error_on_one_record_of_a_batch_rejects_that_record_and_meters_the_rest(
    make_stream, calls_meters
):
    stream = make_stream(SHAPE_AND_METER)
    records = [
        {"customer": "c1", "amount": 10, "parts": 2},
        {"customer": "c1", "amount": 7, "parts": 0},  # the script error: division by zero
        {"customer": "c2", "amount": 9, "parts": 3},
        {"customer": "c2", "amount": 4, "parts": 1},
    ]
    with time_machine.travel(T0 + datetime.timedelta(minutes=1), tick=False):
        run = engine_services.stream_run_execute(stream_id=stream.pk, records=records)
    assert run.status == StreamRun.Status.SUCCEEDED
    assert run.node_counts["shape"] == {"in": 4, "out": 3, "rejected": 1}
    assert run.rejections == [
        {
            "nodeId": "shape",
            "reason": "fields.value: modulus or divide by zero",
            "record": {"customer": "c1", "amount": 7, "parts": 0},
        }
    ]
    assert values() == {"c1": 5, "c2": 7}


def test_every_kind_of_bad_record_is_rejected_alone_and_the_good_ones_are_metered(make_stream, calls_meters):
    stream = make_stream(
        chain(
            (
                "shape",
                "map",
                {
                    "fields": {
                        "userId": "record.customer",
                        "value": "size(record.L.map(a, record.L.map(b, a + b))) > 0 ? record.amount / record.parts : 0",
                        "label": "record.label",
                    }
                },
            ),
            ("meter", "meter", {"meterKey": "calls"}),
        )
    )
    good = {"customer": "c1", "amount": 6, "parts": 3, "L": [1], "label": "ok"}
    records = [
        good,
        {**good, "L": list(range(100))},  # the script's budget
        {**good, "amount": 1e308, "parts": 1e-308},  # not finite
        {**good, "label": None, "customer": "c9"},  # no meter for the user: data correction
        {**good, "parts": "x"},  # a value the script cannot use
        {**good, "customer": "c2"},
    ]
    with time_machine.travel(T0 + datetime.timedelta(minutes=1), tick=False):
        run = engine_services.stream_run_execute(stream_id=stream.pk, records=records)
    assert run.status == StreamRun.Status.SUCCEEDED
    assert run.node_counts["shape"] == {"in": 6, "out": 3, "rejected": 3}
    assert [rejection["reason"] for rejection in run.rejections] == [
        "fields.value: the expression exceeded its budget of 10000 steps (STREAM_SCRIPT_MAX_STEPS)",
        "fields.value: the result is not a finite number (NaN or infinity): it has no JSON form",
        "fields.value: found no matching overload for 'multiplication_div' applied to "
        "'(<class 'celpy.celtypes.IntType'>, <class 'celpy.celtypes.StringType'>)'",
        run.rejections[3]["reason"],  # the ledger's own reason for c9
    ]
    assert run.rejections[3]["nodeId"] == "meter"
    assert values() == {"c1": 2, "c2": 2}


# --- A failed run backs off --------------------------------------------------------------------------


def test_the_backoff_doubles_from_5_seconds_to_5_minutes():
    assert [engine_services.stream_run_backoff_seconds(n) for n in range(0, 9)] == [
        0,
        5,
        10,
        20,
        40,
        80,
        160,
        300,
        300,
    ]


def test_a_stream_whose_runs_fail_waits_longer_after_each_failure(make_stream, collection_log):  # noqa: F811
    stream = make_stream(chain(("peek", "inspect", {})))
    working_nodes = stream.nodes
    Stream.objects.filter(pk=stream.pk).update(
        nodes=[*working_nodes[:1], {"id": "peek", "name": "Peek", "type": "nothing", "config": {}}]
    )
    collection_log.append([{"n": 1}])
    from collection.models import CollectedBatch

    # Sequences are shared by the whole test run: the batch's own one is what the offset reaches.
    appended = CollectedBatch.objects.filter(collector=collection_log.collector).order_by("-sequence").first()

    def run_at(seconds: float):
        with time_machine.travel(T0 + datetime.timedelta(seconds=seconds), tick=False):
            return engine_services.stream_run_collected(stream_id=stream.pk)

    assert run_at(0).status == StreamRun.Status.FAILED
    assert run_at(4) is None  # backing off: nothing runs, nothing is recorded
    assert run_at(5.5).status == StreamRun.Status.FAILED
    assert run_at(15) is None  # 10 s after the second failure
    assert run_at(16).status == StreamRun.Status.FAILED
    assert run_at(35) is None  # 20 s after the third
    assert StreamRun.objects.filter(stream=stream).count() == 3

    Stream.objects.filter(pk=stream.pk).update(nodes=working_nodes)  # the cause is mended
    assert run_at(37).status == StreamRun.Status.SUCCEEDED
    assert collection_log.offset(stream) == appended.sequence
    collection_log.append([{"n": 2}])
    assert run_at(37.1).status == StreamRun.Status.SUCCEEDED  # no backoff after a success


def test_a_sum_that_would_overflow_rejects_its_group_and_the_other_groups_go_on(make_stream, api):
    stream = make_stream(
        chain(
            (
                "per-customer",
                "dataAggregator",
                {
                    "storeId": "d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09",
                    "keyFields": ["customerId"],
                    "aggregations": [{"target": "bytes", "function": "sum", "field": "bytes"}],
                },
            )
        )
    )
    records = [
        {"customerId": "huge", "bytes": 1.5e308},
        {"customerId": "huge", "bytes": 1.5e308},
        {"customerId": "c1", "bytes": 7},
    ]
    response = api.post(f"/streams/{stream.pk}/preview", {"records": records}, format="json")
    assert response.status_code == 200, response.content  # never "Out of range float values"
    node = response.json()["nodes"][1]
    assert node["records"] == [{"customerId": "c1", "bytes": 7}]
    assert [rejection["reason"] for rejection in node["rejections"]] == [
        "the aggregate would not be a finite number (the sum overflowed): it cannot be stored"
    ] * 2
    run = engine_services.stream_run_execute(stream_id=stream.pk, records=records)
    assert (run.status, run.node_counts["per-customer"]) == (
        StreamRun.Status.SUCCEEDED,
        {"in": 3, "out": 1, "rejected": 2},
    )


def test_a_record_holding_a_nul_character_is_rejected_at_the_input_and_the_rest_are_kept(make_stream):
    from streams.models import InspectRecord

    stream = make_stream(chain(("peek", "inspect", {})))
    records = [{"n": 1}, {"n": 2, "note": {"text": "a\x00b"}}, {"n": 3}]
    run = engine_services.stream_run_execute(stream_id=stream.pk, records=records)
    assert run.status == StreamRun.Status.SUCCEEDED, run.error
    assert run.node_counts["in"] == {"in": 3, "out": 2, "rejected": 1}
    assert run.rejections[0]["reason"] == (
        "a record must not hold a NUL character (\\u0000): PostgreSQL cannot store it"
    )
    assert sorted(record["n"] for record in InspectRecord.objects.values_list("record", flat=True)) == [1, 3]
