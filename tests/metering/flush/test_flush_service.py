"""The flush-and-reset service: what a record holds, how a meter is reset, which meters are due."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from metering import flush, services
from metering.models import Meter, MeteredRecord
from notifications import services as notification_services
from notifications.models import NotificationEvent
from tests.conftest import client_for
from tests.metering.factories import make_meter, make_meter_type
from tests.metering.flush.helpers import bulk_meters

pytestmark = pytest.mark.django_db

CREATED = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
# "0 0 1 * *" in Europe/Stockholm: midnight CET on the 1st is 23:00 UTC the day before.
JANUARY_END = datetime(2027, 1, 31, 23, 0, tzinfo=UTC)
FEBRUARY_END = datetime(2027, 2, 28, 23, 0, tzinfo=UTC)
MARCH_END = datetime(2027, 3, 31, 22, 0, tzinfo=UTC)  # 1 April 00:00 CEST
LAST_INGESTED = datetime(2027, 1, 29, 8, 30, 15, 123000, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(CREATED, tick=False) as traveller:
        yield traveller


@pytest.fixture
def monthly(account, clock):
    return make_meter_type(
        account,
        name="API calls",
        unit="requests",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Europe/Stockholm",
        capacity=1000,
        thresholds=[],
    )


def records_answered(meter) -> list[dict]:
    """``GET /meters/{id}/records`` as a client of the meter's account sees it now (a token issued
    before the clock moved would have expired)."""
    return (
        client_for(meter.account, name=f"reader {uuid.uuid4()}")
        .get(f"/meters/{meter.pk}/records")
        .json()["records"]
    )


def use(meter, **state):
    """Set a meter's usage state as the ledger would (the ledger writes these columns directly)."""
    Meter.objects.filter(pk=meter.pk).update(**state)
    meter.refresh_from_db()
    return meter


def test_a_due_meter_is_written_once_with_every_field_then_reset_into_the_next_period(monthly, clock):
    meter = use(
        make_meter(monthly, custom_fields={"plan": "gold"}),
        value=Decimal("42.5"),
        record_count=3,
        groups=[{"category": "eu", "value": 40}],
        group_breakdowns=[{"fields": {"region": "eu"}, "value": 2}],
        carry_first={"host": "a"},
        carry_last={"host": "b"},
        last_ingested_at=LAST_INGESTED,
    )
    assert (meter.period_start, meter.period_end) == (CREATED, JANUARY_END)

    clock.move_to(JANUARY_END + timedelta(seconds=30))
    batch = flush.meters_flush_batch()

    record = MeteredRecord.objects.get()
    assert (batch.meter_count, batch.record_ids, batch.deleted_meter_ids) == (1, [record.pk], [])
    answered = records_answered(meter)
    assert answered == [
        {
            "carryFirst": {"host": "a"},
            "carryLast": {"host": "b"},
            "createdAt": "2027-01-31T23:00:30.000Z",
            "customFields": {"plan": "gold"},
            "groups": [{"category": "eu", "value": 40}],
            "id": str(record.pk),
            "meterId": str(meter.pk),
            "meterKey": meter.meter_key,
            "meterMetaData": {"recordCount": 3, "lastIngestedAt": "2027-01-29T08:30:15.123Z"},
            "meterTypeId": str(monthly.pk),
            "meterTypeName": "API calls",
            "periodEnd": "2027-01-31T23:00:00.000Z",
            "periodStart": "2027-01-10T12:00:00.000Z",
            "timezone": "Europe/Stockholm",
            "unit": "requests",
            "updatedAt": "2027-01-31T23:00:30.000Z",
            "userId": "user0@example.com",
            "value": 42.5,
        }
    ]
    # The service hands out the same document (plus the account) for the stream engine.
    assert batch.records == [{**answered[0], "accountId": str(monthly.account_id)}]

    meter.refresh_from_db()
    assert (
        meter.value,
        meter.record_count,
        meter.groups,
        meter.group_breakdowns,
        meter.carry_first,
        meter.carry_last,
    ) == (Decimal(0), 0, [], [], {}, {})
    assert (meter.period_start, meter.period_end) == (JANUARY_END, FEBRUARY_END)
    assert meter.last_ingested_at == LAST_INGESTED  # the last ingestion is history, not period state
    assert (meter.custom_fields, meter.capacity) == ({"plan": "gold"}, Decimal(1000))


def test_running_the_sweep_again_changes_nothing(monthly, clock):
    meter = use(make_meter(monthly), value=Decimal(7), record_count=1)
    clock.move_to(JANUARY_END)  # exactly at the boundary: due
    assert flush.meters_flush_due() == 1
    meter.refresh_from_db()
    before = Meter.objects.values().get(pk=meter.pk)

    assert [flush.meters_flush_due() for _ in range(3)] == [0, 0, 0]
    assert Meter.objects.values().get(pk=meter.pk) == before
    assert list(MeteredRecord.objects.values_list("value", "period_start")) == [(Decimal(7), CREATED)]


def test_a_meter_is_not_flushed_before_its_period_ends(monthly, clock):
    meter = make_meter(monthly)
    assert flush.meters_flush_due(now=JANUARY_END - timedelta(microseconds=1)) == 0
    assert MeteredRecord.objects.count() == 0
    meter.refresh_from_db()
    assert meter.period_end == JANUARY_END


def test_every_meter_is_flushed_at_period_end_updated_or_not(monthly, clock):
    meter = make_meter(monthly)
    assert flush.meters_flush_due(now=JANUARY_END) == 1
    record = MeteredRecord.objects.get()
    assert (record.value, record.meter_metadata) == (Decimal(0), {"recordCount": 0, "lastIngestedAt": None})
    assert (record.meter_id, record.source_meter_id) == (meter.pk, meter.pk)


@pytest.mark.parametrize(
    ("aggregation", "usage", "reset_to"),
    [
        ("SUM", Decimal("12.5"), Decimal(0)),
        ("INCREMENT", Decimal(4), Decimal(0)),
        ("MAX", Decimal(99), None),
        ("MIN", Decimal(-3), None),
    ],
)
def test_sum_and_increment_reset_to_zero_max_and_min_to_empty(account, clock, aggregation, usage, reset_to):
    meter_type = make_meter_type(
        account,
        aggregation=aggregation,
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        capacity=None,
        thresholds=[],
    )
    meter = use(make_meter(meter_type), value=usage, record_count=2)
    assert flush.meters_flush_due(now=datetime(2027, 2, 1, tzinfo=UTC)) == 1
    meter.refresh_from_db()
    assert (meter.value, MeteredRecord.objects.get().value) == (reset_to, usage)


def test_an_empty_max_meter_is_recorded_as_empty(account, clock):
    meter_type = make_meter_type(account, aggregation="MAX", timezone="Etc/UTC", capacity=None, thresholds=[])
    meter = make_meter(meter_type)
    flush.meters_flush_due(now=datetime(2027, 2, 1, tzinfo=UTC))
    assert [record["value"] for record in records_answered(meter)] == [None]


def test_a_delete_on_reset_meter_is_gone_after_its_record(monthly, clock):
    doomed = use(make_meter(monthly, user_id="leaving@example.com"), value=Decimal(5), record_count=1)
    services.meter_update(meter=doomed, data={"delete_on_reset": True})
    staying = make_meter(monthly, user_id="staying@example.com")

    batch = flush.meters_flush_batch(now=JANUARY_END)

    assert (batch.meter_count, batch.deleted_meter_ids) == (2, [doomed.pk])
    assert list(Meter.objects.values_list("pk", flat=True)) == [staying.pk]
    record = MeteredRecord.objects.get(source_meter_id=doomed.pk)
    assert (record.meter_id, record.value, record.user_id, record.period_end) == (
        None,
        Decimal(5),
        "leaving@example.com",
        JANUARY_END,
    )
    assert flush.meters_flush_due(now=FEBRUARY_END - timedelta(seconds=1)) == 0
    assert MeteredRecord.objects.count() == 2


def test_after_active_to_only_meters_updated_in_the_period_are_flushed_and_then_scheduling_stops(
    account, clock
):
    # Active until 20 January: the January period (ending 31 January) ends after activeTo.
    meter_type = make_meter_type(
        account,
        reset_cron="0 0 1 * *",
        timezone="Europe/Stockholm",
        active_to=datetime(2027, 1, 20, tzinfo=UTC),
    )
    idle = make_meter(meter_type, user_id="idle@example.com")
    used = use(make_meter(meter_type, user_id="used@example.com"), value=Decimal(8), record_count=2)

    assert flush.meters_flush_due(now=JANUARY_END) == 1
    assert list(MeteredRecord.objects.values_list("source_meter_id", "value")) == [(used.pk, Decimal(8))]
    idle.refresh_from_db()
    used.refresh_from_db()
    assert (idle.period_start, idle.period_end) == (CREATED, JANUARY_END)  # not flushed, not moved
    assert (used.period_start, used.period_end, used.value) == (JANUARY_END, FEBRUARY_END, Decimal(0))

    # Months later neither meter is touched again: no usage can reach a period after activeTo.
    for month in (3, 6, 12):
        assert flush.meters_flush_due(now=datetime(2027, month, 15, tzinfo=UTC)) == 0
    assert MeteredRecord.objects.count() == 1
    used.refresh_from_db()
    assert (used.period_start, used.period_end) == (JANUARY_END, FEBRUARY_END)

    # Usage that still reaches a stopped meter (a late record) is flushed, never lost.
    use(idle, value=Decimal(3), record_count=1)
    assert flush.meters_flush_due(now=datetime(2027, 3, 5, tzinfo=UTC)) == 1
    late = MeteredRecord.objects.get(source_meter_id=idle.pk)
    assert (late.period_start, late.period_end, late.value) == (CREATED, JANUARY_END, Decimal(3))
    idle.refresh_from_db()
    assert (idle.period_start, idle.period_end) == (JANUARY_END, MARCH_END)


def test_a_period_ending_inside_the_active_window_is_flushed_without_usage(account, clock):
    meter_type = make_meter_type(
        account, reset_cron="0 0 1 * *", timezone="Europe/Stockholm", active_to=JANUARY_END
    )
    meter = make_meter(meter_type)
    assert flush.meters_flush_due(now=JANUARY_END) == 1  # ends exactly at activeTo
    assert flush.meters_flush_due(now=FEBRUARY_END) == 0  # the next one ends after it, unused
    assert list(MeteredRecord.objects.values_list("period_start", "period_end")) == [(CREATED, JANUARY_END)]
    meter.refresh_from_db()
    assert (meter.period_start, meter.period_end) == (JANUARY_END, FEBRUARY_END)


def test_after_downtime_the_overdue_period_is_flushed_once_and_the_next_ends_at_the_next_fire_after_now(
    account, clock
):
    daily = make_meter_type(account, reset_cron="0 0 * * *", timezone="Etc/UTC")
    meter = use(make_meter(daily), value=Decimal(10), record_count=4)
    assert meter.period_end == datetime(2027, 1, 11, tzinfo=UTC)

    # The sweep was down from 10 January until 14 January 15:00.
    assert flush.meters_flush_due(now=datetime(2027, 1, 14, 15, 0, tzinfo=UTC)) == 1
    meter.refresh_from_db()
    assert (meter.period_start, meter.period_end) == (
        datetime(2027, 1, 11, tzinfo=UTC),
        datetime(2027, 1, 15, tzinfo=UTC),
    )
    assert flush.meters_flush_due(now=datetime(2027, 1, 15, tzinfo=UTC)) == 1
    assert list(
        MeteredRecord.objects.order_by("period_start").values_list("period_start", "period_end", "value")
    ) == [
        (CREATED, datetime(2027, 1, 11, tzinfo=UTC), Decimal(10)),
        # The missed days are one period: contiguous, no empty record per missed boundary.
        (datetime(2027, 1, 11, tzinfo=UTC), datetime(2027, 1, 15, tzinfo=UTC), Decimal(0)),
    ]
    meter.refresh_from_db()
    assert meter.period_end == datetime(2027, 1, 16, tzinfo=UTC)


def test_a_schedule_change_applies_from_the_next_period(monthly, clock):
    meter = make_meter(monthly)
    services.meter_type_update(meter_type=monthly, data={"reset_cron": "0 0 * * *"})
    meter.refresh_from_db()
    assert meter.period_end == JANUARY_END  # the current period keeps its end
    flush.meters_flush_due(now=JANUARY_END)
    meter.refresh_from_db()
    assert (meter.period_start, meter.period_end) == (JANUARY_END, datetime(2027, 2, 1, 23, 0, tzinfo=UTC))


def test_batches_take_the_oldest_due_meters_first_and_at_most_batch_size(monthly):
    old = datetime(2027, 1, 1, tzinfo=UTC)
    older = bulk_meters(monthly, 2, period_start=old - timedelta(days=2), period_end=old - timedelta(days=1))
    newer = bulk_meters(monthly, 3, period_start=old - timedelta(days=1), period_end=old)
    first = flush.meters_flush_batch(now=old, batch_size=2)
    assert {record["meterId"] for record in first.records} == {str(meter.pk) for meter in older}
    assert [flush.meters_flush_due(now=old, batch_size=2) for _ in range(3)] == [2, 1, 0]
    assert MeteredRecord.objects.filter(source_meter_id__in=[m.pk for m in newer]).count() == 3


def test_a_batch_size_outside_the_limits_is_refused(db):
    with pytest.raises(ValueError):
        flush.meters_flush_due(batch_size=0)
    with pytest.raises(ValueError):
        flush.meters_flush_due(batch_size=flush.MAX_BATCH_SIZE + 1)


def _statements_for_one_batch(meter_type, count: int, now: datetime) -> int:
    meters = bulk_meters(meter_type, count, period_start=now - timedelta(days=1), period_end=now)
    Meter.objects.filter(pk__in=[m.pk for m in meters[: count // 2]]).update(delete_on_reset=True)
    with CaptureQueriesContext(connection) as queries:
        assert flush.meters_flush_due(now=now, batch_size=500) == count
    return len(queries)


def test_a_batch_costs_the_same_statements_for_three_meters_as_for_three_hundred(monthly):
    few = _statements_for_one_batch(monthly, 3, datetime(2027, 1, 1, tzinfo=UTC))
    many = _statements_for_one_batch(monthly, 300, datetime(2027, 1, 2, tzinfo=UTC))
    assert few == many
    assert MeteredRecord.objects.count() == 303


def test_each_record_is_published_as_a_meter_flushed_notification_in_the_flush_transaction(
    account, other_account, monthly, settings
):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    notification_services.notification_endpoint_create(
        account=account, url="http://127.0.0.1:9/hooks", event_types=["meter.flushed"]
    )
    notification_services.notification_endpoint_create(
        account=other_account, url="http://127.0.0.1:9/other", event_types=["meter.flushed"]
    )
    meters = [use(make_meter(monthly, user_id=f"u{n}"), value=Decimal(n), record_count=1) for n in (1, 2)]

    flush.meters_flush_due(now=JANUARY_END)

    events = NotificationEvent.objects.order_by("payload__userId")
    assert [(event.account_id, event.event_type) for event in events] == [(account.pk, "meter.flushed")] * 2
    answered = [records_answered(meter)[0] for meter in meters]
    assert [event.payload for event in events] == answered
    assert [event.deliveries.count() for event in events] == [1, 1]


def test_the_stream_engine_hook_sees_the_records_inside_the_flush_transaction(monthly, monkeypatch):
    meter = use(make_meter(monthly), value=Decimal(4), record_count=1)
    seen = []

    def engine(records):  # the outside world the hook will connect to
        meter.refresh_from_db()
        seen.append(([record["value"] for record in records], meter.value, MeteredRecord.objects.count()))

    monkeypatch.setattr(flush, "flushed_records_emit", engine)
    flush.meters_flush_due(now=JANUARY_END)
    assert seen == [([4], Decimal(0), 1)]


def test_a_failure_inside_the_batch_rolls_the_whole_batch_back(monthly, monkeypatch):
    meter = use(make_meter(monthly), value=Decimal(4), record_count=1)

    def engine_down(records):
        raise RuntimeError("the engine's queue is unavailable")

    monkeypatch.setattr(flush, "flushed_records_emit", engine_down)
    with pytest.raises(RuntimeError):
        flush.meters_flush_due(now=JANUARY_END)
    meter.refresh_from_db()
    assert (meter.value, meter.period_end, MeteredRecord.objects.count()) == (Decimal(4), JANUARY_END, 0)

    monkeypatch.undo()
    assert flush.meters_flush_due(now=JANUARY_END) == 1
    assert MeteredRecord.objects.get().value == Decimal(4)


def test_the_hook_is_a_no_op_until_the_engine_connects():
    assert flush.flushed_records_emit([{"id": "x"}]) is None


def test_a_meter_of_a_type_starting_later_has_no_period_and_no_record_before_it_starts(account, clock):
    """Seed 003: a meter is active from its type's activeFrom; nothing is flushed for the time before."""
    starts = datetime(2027, 3, 10, 9, 30, tzinfo=UTC)
    later = make_meter_type(
        account, name="Later", reset_cron="0 0 1 * *", timezone="Europe/Stockholm", active_from=starts
    )
    meter = make_meter(later)

    assert (meter.period_start, meter.period_end) == (starts, MARCH_END)
    assert flush.meters_flush_due(now=FEBRUARY_END + timedelta(days=1)) == 0
    assert flush.meters_flush_due(now=MARCH_END) == 1
    assert list(MeteredRecord.objects.values_list("period_start", "period_end")) == [(starts, MARCH_END)]
