"""One record outside a transaction (the hot HTTP paths): one read and one self-committing statement,
with the same results as the batch path; anything else falls back to the batch path."""

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
    executed: list[str] = []

    def count(execute, sql, params, many, context):
        executed.append(sql.split()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        result = apply(account, [record])
    return executed, result


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


@pytest.mark.parametrize("aggregation,values,expected", [
    ("SUM", [3, "2.5", -1], Decimal("4.5")), ("INCREMENT", [3, 100, 7], Decimal(3)),
    ("MAX", [3, 11, 7], Decimal(11)), ("MIN", [3, -1, 7], Decimal(-1)),
])
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
    apply(account, [UsageInput(user_id="alice", value=1, meter_type_id=meter.meter_type_id, idempotency_key="k",
                               request_hash="a")])
    other = apply(account, [UsageInput(user_id="alice", value=2, meter_type_id=meter.meter_type_id,
                                       idempotency_key="k", request_hash="b")])

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

    assert refused == ["INSERT"]  # the correction, in the batch path
    assert crossing[:2] == ["WITH", "WITH"] and "SELECT" in crossing and "UPDATE" in crossing
    assert len(crossed.crossings) == 1 and ThresholdEvent.objects.count() == 1
    assert "INSERT" in created and Meter.objects.get(user_id="new-customer").value == Decimal(1)
    assert Meter.objects.get(pk=plain.pk).groups == [{"key": "gold", "value": 1, "recordCount": 1}]
    assert DataCorrection.objects.get().reason == "MISSING_USER_ID"
    assert grouped == ["WITH", "WITH", "SELECT", "UPDATE"]
