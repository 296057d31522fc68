"""Records outside a transaction (the hot paths): one read and one self-committing statement
(``APPEND_COUNT``), with the same results as the batch path; anything else falls back to it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection

from metering.ledger import Outcome, UsageInput
from metering.models import DataCorrection, Meter, ThresholdEvent, UsageRecord, UsageRollup
from tests.metering.ledger.conftest import (
    NOW,
    PERIOD_END,
    START,
    apply,
    make_meter,
    make_type,
    usage,
    value_of,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def statements(account, record) -> tuple[list[str], object]:
    return batch_statements(account, [record])


def batch_statements(account, records) -> tuple[list[str], object]:
    executed: list[str] = []

    def count(execute, sql, params, many, context):
        executed.append(sql.split()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        result = apply(account, records)
    return executed, result


def test_the_two_statements_are_prepared_once_per_connection_and_reused(account):
    """Django connects with psycopg's prepare_threshold None, which disables even an explicit
    prepare=True: the statements were planned anew on every request (as costly as running them)."""
    meter_type = make_meter(make_type(account)).meter_type
    for key in ("p1", "p2", "p3"):
        assert apply(account, [usage(meter_type, value=1, key=key)]).accepted == 1

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT split_part(ltrim(statement, E' \\n'), ' ', 1), generic_plans + custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%metering_metertype%' OR statement LIKE '%metering_usagededupkey%'"
        )
        prepared = sorted(cursor.fetchall())

    # The read (RESOLVE) and the write (APPEND_COUNT), each prepared once and run three times.
    assert prepared == [("WITH", 3), ("WITH", 3)]


def test_one_record_is_one_read_and_one_statement_and_a_replay_is_a_duplicate(account):
    meter = make_meter(make_type(account))

    first_statements, first = statements(account, usage(meter.meter_type, value=5, key="k"))
    replay_statements, replay = statements(account, usage(meter.meter_type, value=5, key="k"))

    assert first_statements == replay_statements == ["WITH", "WITH"]
    assert (first.results[0].outcome, first.results[0].counted, first.accepted) == (Outcome.ACCEPTED, True, 1)
    assert (replay.results[0].outcome, replay.duplicates) == (Outcome.DUPLICATE, 1)
    meter.refresh_from_db()
    assert (meter.value, meter.record_count, meter.last_ingested_at) == (Decimal(5), 1, NOW)
    rollup = UsageRollup.objects.get()
    assert (rollup.sum, rollup.count, rollup.max, rollup.min) == (Decimal(5), 1, Decimal(5), Decimal(5))
    assert UsageRecord.objects.get().idempotency_key == "k"


@pytest.mark.parametrize(
    "aggregation,values,expected",
    [
        ("SUM", [3, "2.5", -1], Decimal("4.5")),
        ("INCREMENT", [3, 100, 7], Decimal(3)),
        ("MAX", [3, 11, 7], Decimal(11)),
        ("MIN", [3, -1, 7], Decimal(-1)),
    ],
)
def test_each_aggregation_one_record_at_a_time(account, aggregation, values, expected):
    meter = make_meter(make_type(account, aggregation=aggregation))
    for value in values:
        apply(account, [usage(meter.meter_type, value=value)])

    meter.refresh_from_db()
    assert (meter.value, meter.record_count) == (expected, 3)


def test_a_record_outside_the_open_period_is_in_the_ledger_only(account, settings):
    meter = make_meter(make_type(account, at=START - timedelta(days=2)))
    settings.USAGE_CLOCK_SKEW_SECONDS = 60 * 60 * 24 * 30

    early = apply(account, [usage(meter.meter_type, value=1, at=START - timedelta(hours=1))])
    late = apply(account, [usage(meter.meter_type, value=1, at=PERIOD_END)])

    assert [early.results[0].counted, late.results[0].counted] == [False, False]
    assert (value_of(meter), meter.record_count, UsageRecord.objects.count()) == (Decimal(0), 0, 2)


def test_a_reused_key_with_another_body_is_flagged(account):
    meter = make_meter(make_type(account))
    apply(
        account,
        [
            UsageInput(
                user_id="alice",
                value=1,
                meter_type_id=meter.meter_type_id,
                idempotency_key="k",
                request_hash="a",
            )
        ],
    )
    other = apply(
        account,
        [
            UsageInput(
                user_id="alice",
                value=2,
                meter_type_id=meter.meter_type_id,
                idempotency_key="k",
                request_hash="b",
            )
        ],
    )

    assert (other.results[0].outcome, other.results[0].key_reused) == (Outcome.DUPLICATE, True)
    assert value_of(meter) == Decimal(1)


def test_what_the_single_statement_does_not_cover_goes_through_the_batch_path(account):
    plain = make_meter(make_type(account, name="Plain", api_name="plain"))
    watched = make_meter(make_type(account, name="Watched", api_name="watched", thresholds=[{"value": 2}]))
    creating = make_type(account, name="Auto", api_name="auto")
    creating.auto_create_meters = True
    creating.save()

    refused, _ = statements(account, usage(plain.meter_type, user=None))
    crossing, crossed = statements(account, usage(watched.meter_type, value=3))
    created, _ = statements(account, usage(creating, user="new-customer"))
    grouped, _ = statements(account, usage(plain.meter_type, group="gold"))

    assert refused == ["WITH", "INSERT"]  # its key (held by the correction), the correction: the batch path
    assert crossing[:2] == ["WITH", "WITH"] and "SELECT" in crossing and "UPDATE" in crossing
    assert len(crossed.crossings) == 1 and ThresholdEvent.objects.count() == 1
    assert "INSERT" in created and Meter.objects.get(user_id="new-customer").value == Decimal(1)
    assert Meter.objects.get(pk=plain.pk).groups == [{"key": "gold", "value": 1, "recordCount": 1}]
    assert DataCorrection.objects.get().reason == "MISSING_USER_ID"
    assert grouped == ["WITH", "WITH", "SELECT", "UPDATE"]


def test_a_batch_is_one_read_and_one_statement_across_meters_and_aggregations(account, settings):
    settings.USAGE_CLOCK_SKEW_SECONDS = 60 * 60 * 24 * 30
    summed = make_meter(make_type(account, name="Summed", api_name="summed"))
    highest = make_meter(
        make_type(account, name="Highest", api_name="highest", aggregation="MAX"), user_id="bob"
    )
    make_meter(summed.meter_type, user_id="bob")
    records = [
        usage(summed.meter_type, value=2, key="a"),
        usage(summed.meter_type, value=3, key="b"),
        usage(highest.meter_type, user="bob", value=7, key="c"),
        usage(highest.meter_type, user="bob", value=4, key="d"),
        usage(summed.meter_type, value=2, key="a"),  # twice in the batch
        usage(summed.meter_type, user="bob", value=1, key="e", at=PERIOD_END + timedelta(hours=1)),
    ]

    executed, result = batch_statements(account, records)

    assert executed == ["WITH", "WITH"]
    assert [item.outcome for item in result.results] == [Outcome.ACCEPTED] * 4 + [
        Outcome.DUPLICATE,
        Outcome.ACCEPTED,
    ]
    assert [item.counted for item in result.results] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]  # e: next period
    assert (result.accepted, result.duplicates, result.meters_updated) == (5, 1, 2)
    summed.refresh_from_db()
    highest.refresh_from_db()
    assert (summed.value, summed.record_count, highest.value, highest.record_count) == (
        Decimal(5),
        2,
        Decimal(7),
        2,
    )
    assert UsageRecord.objects.count() == 5
    assert value_of(Meter.objects.get(meter_type=summed.meter_type, user_id="bob")) == Decimal(0)


def test_a_key_repeated_in_a_batch_with_another_body_is_flagged(account):
    meter = make_meter(make_type(account))
    first = UsageInput(
        user_id="alice", value=1, meter_type_id=meter.meter_type_id, idempotency_key="k", request_hash="a"
    )
    same = UsageInput(
        user_id="alice", value=1, meter_type_id=meter.meter_type_id, idempotency_key="k", request_hash="a"
    )
    other = UsageInput(
        user_id="alice", value=2, meter_type_id=meter.meter_type_id, idempotency_key="k", request_hash="b"
    )

    result = apply(account, [first, same, other])

    assert [(item.outcome, item.key_reused) for item in result.results] == [
        (Outcome.ACCEPTED, False),
        (Outcome.DUPLICATE, False),
        (Outcome.DUPLICATE, True),
    ]
    assert value_of(meter) == Decimal(1)


def test_records_keep_their_own_source_ref_in_one_batch(account):
    meter = make_meter(make_type(account))
    records = [
        usage(meter.meter_type, key="a", source_ref="request-a"),
        usage(meter.meter_type, key="b"),
        usage(meter.meter_type, user=None, key="c", source_ref="request-c"),
    ]

    apply(account, records, source_ref="batch")

    assert dict(UsageRecord.objects.values_list("idempotency_key", "source_ref")) == {
        "a": "request-a",
        "b": "batch",
    }
    assert DataCorrection.objects.get().source_ref == "request-c"
