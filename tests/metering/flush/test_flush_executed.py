"""The flush of a stream execution (``meters_flush_executed``): the meters a run counted are
written and reset in the run's transaction, their period unchanged, once per execution."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from metering import flush
from metering.models import Meter, MeteredRecord
from notifications import services as notification_services
from notifications.models import NotificationEvent
from tests.metering.factories import make_meter, make_meter_type

pytestmark = pytest.mark.django_db

CREATED = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
JANUARY_END = datetime(2027, 2, 1, 0, 0, tzinfo=UTC)
RUN = CREATED + timedelta(hours=2)


@pytest.fixture
def clock():
    with time_machine.travel(CREATED, tick=False) as traveller:
        yield traveller


def counted(meter, **state):
    Meter.objects.filter(pk=meter.pk).update(**state)
    meter.refresh_from_db()
    return meter


def test_the_meters_are_written_and_reset_in_their_period_once_per_execution(account, clock, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    notification_services.notification_endpoint_create(
        account=account, url="http://127.0.0.1:9/hooks", event_types=["meter.flushed"]
    )
    calls = make_meter_type(
        account, name="Calls", aggregation="SUM", reset_cron="0 0 1 * *", timezone="Etc/UTC"
    )
    peak = make_meter_type(
        account, name="Peak", aggregation="MAX", reset_cron="0 0 1 * *", timezone="Etc/UTC"
    )
    summed = counted(
        make_meter(calls),
        value=Decimal(7),
        record_count=2,
        groups=[{"key": "eu", "value": 7}],
        carry_last={"host": "b"},
        carry_last_at=CREATED + timedelta(minutes=5),
        last_ingested_at=CREATED + timedelta(minutes=5),
    )
    highest = counted(make_meter(peak), value=Decimal(3), record_count=1)
    idle = make_meter(calls, user_id="idle@example.com")  # counted nothing since its last flush

    batch = flush.meters_flush_executed(
        meter_ids=[summed.pk, highest.pk, idle.pk], execution_ref="s/m/batch:1", now=RUN
    )

    assert batch.meter_count == 2
    assert sorted(
        (
            r["meterTypeName"],
            r["value"],
            r["periodStart"],
            r["periodEnd"],
            r["createdAt"],
            r["meterMetaData"]["recordCount"],
            r["meterMetaData"]["streamExecution"],
        )
        for r in batch.records
    ) == [
        (
            "Calls",
            7,
            "2027-01-10T12:00:00.000Z",
            "2027-02-01T00:00:00.000Z",
            "2027-01-10T14:00:00.000Z",
            2,
            "s/m/batch:1",
        ),
        (
            "Peak",
            3,
            "2027-01-10T12:00:00.000Z",
            "2027-02-01T00:00:00.000Z",
            "2027-01-10T14:00:00.000Z",
            1,
            "s/m/batch:1",
        ),
    ]
    summed.refresh_from_db()
    highest.refresh_from_db()
    assert (summed.value, summed.record_count, summed.groups, summed.carry_last, summed.carry_last_at) == (
        Decimal(0),
        0,
        [],
        {},
        None,
    )
    assert (summed.period_start, summed.period_end) == (CREATED, JANUARY_END)
    assert (highest.value, highest.record_count) == (None, 0)  # MAX is empty again
    assert NotificationEvent.objects.filter(event_type="meter.flushed").count() == 2

    # The same execution again (a replay): the constraint refuses a second record, and a meter
    # that counted more meanwhile keeps it for the next flush.
    counted(summed, value=Decimal(4), record_count=1)
    again = flush.meters_flush_executed(meter_ids=[summed.pk], execution_ref="s/m/batch:1", now=RUN)
    assert again.records == []
    summed.refresh_from_db()
    assert (summed.value, summed.record_count) == (Decimal(4), 1)
    later = flush.meters_flush_executed(meter_ids=[summed.pk], execution_ref="s/m/batch:2", now=RUN)
    assert [record["value"] for record in later.records] == [4]
    assert list(
        MeteredRecord.objects.filter(source_meter_id=summed.pk)
        .order_by("created_at", "execution_ref")
        .values_list("value", "execution_ref")
    ) == [(Decimal(7), "s/m/batch:1"), (Decimal(4), "s/m/batch:2")]

    # At period end the meter gets its own record too: executions never end a period.
    flush.meters_flush_all_due(now=JANUARY_END)
    assert list(
        MeteredRecord.objects.filter(source_meter_id=summed.pk, execution_ref="").values_list(
            "value", "period_start"
        )
    ) == [(Decimal(0), CREATED)]


def test_an_execution_reference_is_required(account):
    with pytest.raises(ValueError):
        flush.meters_flush_executed(meter_ids=[], execution_ref="")
    with pytest.raises(ValueError):
        flush.meters_flush_executed(meter_ids=[], execution_ref="x" * 256)
