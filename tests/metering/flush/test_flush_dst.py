"""Resets across the 2026 DST changes, with the clock frozen and moved as beat's sweep would see it:
exactly one flush per local period, daily and hourly, in Europe/Stockholm and America/New_York."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from metering import flush
from metering.models import MeteredRecord
from tests.metering.factories import make_meter, make_meter_type

pytestmark = pytest.mark.django_db

# When the clocks change in 2026 (UTC).
TRANSITIONS = {
    ("Europe/Stockholm", "spring"): datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 02:00 CET -> 03:00 CEST
    ("Europe/Stockholm", "fall"): datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # 03:00 CEST -> 02:00 CET
    ("America/New_York", "spring"): datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # 02:00 EST -> 03:00 EDT
    ("America/New_York", "fall"): datetime(2026, 11, 1, 6, 0, tzinfo=UTC),  # 02:00 EDT -> 01:00 EST
}
SCHEDULES = {
    # cron, the local period a boundary starts, how far around the change, how often the sweep runs
    "daily": ("0 0 * * *", "%Y-%m-%d", timedelta(days=2), timedelta(hours=1)),
    "hourly": ("0 * * * *", "%Y-%m-%d %H", timedelta(hours=6), timedelta(minutes=10)),
}


def local_period_starts(zone_name: str, label_format: str, start: datetime, end: datetime) -> list[datetime]:
    """The oracle, independent of metering.periods: scan minute by minute and note the first
    instant at which the local clock shows a day (hour) it has not shown before."""
    zone = ZoneInfo(zone_name)
    seen = start.astimezone(zone).strftime(label_format)
    boundaries = []
    instant = start
    while instant < end:
        instant += timedelta(minutes=1)
        label = instant.astimezone(zone).strftime(label_format)
        if label > seen:  # a repeated wall hour (fall back) is not a new period
            boundaries.append(instant)
            seen = label
    return boundaries


def sweep_through(traveller, start: datetime, end: datetime, every: timedelta) -> None:
    """Beat's sweep at every step (twice at every third step: a second run must change nothing)."""
    instant, step = start, 0
    while instant < end:
        instant += every
        step += 1
        traveller.move_to(instant)
        flush.meters_flush_due()
        if step % 3 == 0:
            assert flush.meters_flush_due() == 0


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize(("zone_name", "change"), sorted(TRANSITIONS))
def test_one_flush_per_local_period_across_the_2026_dst_changes(account, zone_name, change, schedule):
    cron, label_format, around, every = SCHEDULES[schedule]
    transition = TRANSITIONS[(zone_name, change)]
    start, end = transition - around, transition + around
    with time_machine.travel(start, tick=False) as traveller:
        meter_type = make_meter_type(
            account, reset_cron=cron, timezone=zone_name, capacity=None, thresholds=[]
        )
        meter = make_meter(meter_type)
        sweep_through(traveller, start, end, every)

    boundaries = local_period_starts(zone_name, label_format, start, end)
    records = list(
        MeteredRecord.objects.filter(source_meter_id=meter.pk)
        .order_by("period_start")
        .values_list("period_start", "period_end")
    )
    assert records == list(zip([start, *boundaries[:-1]], boundaries, strict=True))
    labels = [period_end.astimezone(ZoneInfo(zone_name)).strftime(label_format) for _, period_end in records]
    assert len(labels) == len(set(labels))  # no local period flushed twice
    meter.refresh_from_db()
    assert meter.period_start == boundaries[-1]


def test_stockholm_days_around_spring_forward_are_23_and_24_hours(account):
    start = datetime(2026, 3, 27, 1, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        meter = make_meter(make_meter_type(account, reset_cron="0 0 * * *", timezone="Europe/Stockholm"))
        sweep_through(traveller, start, datetime(2026, 3, 31, 1, 0, tzinfo=UTC), timedelta(hours=1))
    assert list(
        MeteredRecord.objects.filter(source_meter_id=meter.pk)
        .order_by("period_start")
        .values_list("period_end", flat=True)
    ) == [
        datetime(2026, 3, 27, 23, 0, tzinfo=UTC),  # 28 March 00:00 CET
        datetime(2026, 3, 28, 23, 0, tzinfo=UTC),  # 29 March 00:00 CET
        datetime(2026, 3, 29, 22, 0, tzinfo=UTC),  # 30 March 00:00 CEST: 29 March lasted 23 hours
        datetime(2026, 3, 30, 22, 0, tzinfo=UTC),  # 31 March 00:00 CEST
    ]


def test_new_york_hours_around_fall_back_flush_the_repeated_1am_hour_once(account):
    start = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)  # 23:00 EDT on 31 October
    with time_machine.travel(start, tick=False) as traveller:
        meter = make_meter(make_meter_type(account, reset_cron="0 * * * *", timezone="America/New_York"))
        sweep_through(traveller, start, datetime(2026, 11, 1, 9, 0, tzinfo=UTC), timedelta(minutes=10))
    assert list(
        MeteredRecord.objects.filter(source_meter_id=meter.pk)
        .order_by("period_start")
        .values_list("period_end", flat=True)
    ) == [
        datetime(2026, 11, 1, 4, 0, tzinfo=UTC),  # 00:00 EDT
        datetime(2026, 11, 1, 5, 0, tzinfo=UTC),  # 01:00 EDT
        # 01:00 EST (06:00 UTC) is 01:00 again: the local hour 01 is one period of two real hours.
        datetime(2026, 11, 1, 7, 0, tzinfo=UTC),  # 02:00 EST
        datetime(2026, 11, 1, 8, 0, tzinfo=UTC),  # 03:00 EST
        datetime(2026, 11, 1, 9, 0, tzinfo=UTC),  # 04:00 EST
    ]
