"""The dashboard's reads: usage per meter type and day, meters near capacity, notifications, streams."""

import socket
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from console import selectors
from notifications import services as notification_services
from notifications.models import Delivery, EventType
from streams import services as stream_services
from tests.console.conftest import ingest, make_meter, make_type, set_value
from tests.streams.conftest import ACTOR, example

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
SINCE = datetime(2026, 1, 1, tzinfo=UTC)  # the usage tests' meter types exist from then


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def by_day(usage) -> dict[date, Decimal]:
    return {day: value for day, value in zip(usage.days, usage.values, strict=True) if value is not None}


# --- usage_by_meter_type_per_day ------------------------------------------------------------


def test_a_day_sums_the_hours_that_start_on_it_in_the_types_timezone(account):
    calls = make_type(account, since=SINCE, name="Calls", timezone="Europe/Stockholm")
    make_meter(calls, "ann")
    make_meter(calls, "bob")
    # 8 January in Stockholm (CET, UTC+1) is 7 Jan 23:00 -> 8 Jan 23:00 UTC.
    ingest(
        calls,
        ("ann", utc(2027, 1, 7, 23, 0), 5),
        ("bob", utc(2027, 1, 8, 22, 59), 7),
        ("ann", utc(2027, 1, 8, 23, 30), 2),  # 9 January in Stockholm
        ("ann", utc(2026, 12, 11, 22, 59), 100),  # 11 December: before the window
        ("ann", utc(2026, 12, 11, 23, 0), 1),  # 12 December: the window's first day
        ("ann", utc(2027, 1, 10, 11, 0), 3),
        ("bob", utc(2027, 1, 10, 11, 59), 4),
    )

    [usage] = selectors.usage_by_meter_type_per_day(account.pk, 30)

    assert (usage.meter_type_id, usage.name, usage.unit, usage.aggregation, usage.timezone) == (
        calls.pk,
        "Calls",
        "requests",
        "SUM",
        "Europe/Stockholm",
    )
    assert len(usage.days) == len(usage.values) == 30
    assert (usage.days[0], usage.days[-1]) == (date(2026, 12, 12), date(2027, 1, 10))
    assert by_day(usage) == {
        date(2026, 12, 12): 1,
        date(2027, 1, 8): 12,
        date(2027, 1, 9): 2,
        date(2027, 1, 10): 7,
    }
    assert usage.has_usage


def test_decimal_values_are_summed_exactly(account):
    storage = make_type(account, since=SINCE, name="Storage", reset_cron="0 0 1 * *", timezone="Etc/UTC")
    make_meter(storage)
    ingest(
        storage,
        ("ann@example.com", utc(2026, 12, 31, 23), "1.1"),
        ("ann@example.com", utc(2026, 12, 31, 23), "0.4"),
    )

    [usage] = selectors.usage_by_meter_type_per_day(account.pk, 30)

    assert by_day(usage) == {date(2026, 12, 31): Decimal("1.5")}


def test_days_end_today_in_the_types_timezone_even_when_utc_is_a_day_ahead(account):
    late = make_type(account, since=SINCE, name="West coast", timezone="America/Los_Angeles")
    make_meter(late)
    ingest(
        late,
        ("ann@example.com", utc(2027, 1, 10, 2), 9),
        ("ann@example.com", utc(2027, 1, 3, 7), 1),
        ("ann@example.com", utc(2027, 1, 3, 8), 2),
    )

    with time_machine.travel(utc(2027, 1, 10, 3), tick=False):  # 9 January, 19:00 in Los Angeles
        [usage] = selectors.usage_by_meter_type_per_day(account.pk, 7)

    assert (usage.days[0], usage.days[-1]) == (date(2027, 1, 3), date(2027, 1, 9))
    assert by_day(usage) == {date(2027, 1, 3): 2, date(2027, 1, 9): 9}  # 3 Jan 07:00 UTC is 2 Jan there


def test_max_keeps_the_highest_min_the_lowest_and_increment_counts_records(account):
    peak = make_type(account, since=SINCE, name="Peak", aggregation="MAX")
    low = make_type(account, since=SINCE, name="Low", aggregation="MIN")
    hits = make_type(account, since=SINCE, name="Hits", aggregation="INCREMENT")
    for meter_type in (peak, low, hits):
        for user in ("a", "b"):
            make_meter(meter_type, user)
        ingest(
            meter_type,
            ("a", utc(2027, 1, 8, 1), 3),
            ("b", utc(2027, 1, 8, 20), 11),
            ("a", utc(2027, 1, 8, 20), 7),
            ("b", utc(2027, 1, 10, 9), -2),
        )

    hits_usage, low_usage, peak_usage = selectors.usage_by_meter_type_per_day(account.pk, 30)  # by name

    assert by_day(peak_usage) == {date(2027, 1, 8): 11, date(2027, 1, 10): -2}
    assert by_day(low_usage) == {date(2027, 1, 8): 3, date(2027, 1, 10): -2}
    assert by_day(hits_usage) == {date(2027, 1, 8): 3, date(2027, 1, 10): 1}


def test_types_without_usage_are_listed_with_nothing_known(account):
    make_type(account, since=SINCE, name="Quiet", aggregation="MAX")  # no meters
    [usage] = selectors.usage_by_meter_type_per_day(account.pk, 3)
    assert usage.values == (None, None, None)
    assert not usage.has_usage


def test_only_the_accounts_own_usage_is_read_in_two_queries(
    account, other_account, django_assert_num_queries
):
    mine = make_type(account, since=SINCE, name="Mine")
    theirs = make_type(other_account, since=SINCE, name="Theirs")
    for index in range(5):
        make_meter(mine, f"user{index}")
        make_meter(theirs, f"user{index}")
        ingest(mine, (f"user{index}", utc(2027, 1, 10, index), 1))
        ingest(theirs, (f"user{index}", utc(2027, 1, 10, index), 50))

    with django_assert_num_queries(2):  # types, hourly rollups
        usage = selectors.usage_by_meter_type_per_day(account.pk, 30)

    assert [(item.name, by_day(item)) for item in usage] == [("Mine", {date(2027, 1, 10): 5})]
    assert selectors.usage_by_meter_type_per_day(other_account.pk, 30)[0].values[-1] == 250


def test_days_must_be_positive(account):
    with pytest.raises(ValueError, match="at least 1"):
        selectors.usage_by_meter_type_per_day(account.pk, 0)


# --- near capacity --------------------------------------------------------------------------


def test_near_capacity_is_at_least_80_percent_compared_exactly_fullest_first(account, other_account):
    calls = make_type(account, name="Calls", capacity=Decimal(1000))
    values = {"under": 799, "at-80": 800, "over": 1200, "none": None}
    meters = {user: set_value(make_meter(calls, user), value) for user, value in values.items()}
    thirds = make_type(account, name="Thirds", capacity=Decimal(3))
    set_value(make_meter(thirds, "exactly-80"), Decimal("2.4"))  # 2.4 * 100 == 3 * 80: exact, not a float
    zero = make_type(account, name="Zero", capacity=Decimal(0))
    set_value(make_meter(zero, "zero-unused"), 0)
    set_value(make_meter(zero, "zero-used"), Decimal("0.1"))
    unlimited = make_type(account, name="Unlimited", capacity=None)
    set_value(make_meter(unlimited, "no-capacity"), 10**9)
    set_value(make_meter(make_type(other_account, name="Calls"), "theirs"), 5000)

    near = list(selectors.meters_near_capacity(account.pk))

    assert [(meter.user_id, meter.percent_of_capacity) for meter in near] == [
        ("zero-used", None),
        ("over", 120.0),
        ("at-80", 80.0),
        ("exactly-80", pytest.approx(80.0)),
    ]
    assert meters["at-80"].pk in {meter.pk for meter in near}
    assert [meter.user_id for meter in selectors.meters_near_capacity(account.pk, percent=100)] == [
        "zero-used",
        "over",
    ]


# --- notifications --------------------------------------------------------------------------


@pytest.fixture
def endpoint(account, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    with socket.socket() as probe:  # a port nothing listens on: every attempt is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    created, _ = notification_services.notification_endpoint_create(
        account=account, url=f"http://127.0.0.1:{port}/hook", event_types=list(EventType.values)
    )
    return created


def test_threshold_notifications_show_their_meter_threshold_and_delivery_outcome(
    account, other_account, endpoint
):
    calls = make_type(account, name="Calls")
    meter = make_meter(calls, "ann@example.com")
    foreign_meter = make_meter(make_type(other_account, name="Theirs"), "bob@globex.example")
    publish = notification_services.notification_publish
    first = publish(
        account_id=account.pk,
        event_type=EventType.THRESHOLD_CROSSED,
        payload={
            "meterId": str(meter.pk),
            "threshold": {"name": "warning", "capacityPercentage": 80},
            "value": 812.5,
        },
    )
    notification_services.delivery_attempt(delivery_id=first.deliveries.get().pk)
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        # Another account's meter id in a payload never resolves to that meter; 951.0 shows as 951.
        publish(
            account_id=account.pk,
            event_type=EventType.THRESHOLD_CROSSED,
            payload={"meterId": str(foreign_meter.pk), "threshold": {"value": 950}, "value": 951.0},
        )
    with time_machine.travel(NOW + timedelta(minutes=2), tick=False):
        publish(account_id=account.pk, event_type=EventType.METER_FLUSHED, payload={"meterId": str(meter.pk)})

    notifications = selectors.recent_threshold_notifications(account.pk)

    assert [
        (item.meter, item.threshold, item.value, item.succeeded, item.pending, item.failed)
        for item in notifications
    ] == [
        (None, "950", "951", 0, 1, 0),
        (meter, "warning (80 % of capacity)", "812.5", 0, 0, 1),
    ]
    assert selectors.recent_threshold_notifications(other_account.pk) == []


def test_failed_deliveries_are_the_accounts_gave_up_deliveries_latest_first(account, endpoint):
    events = [
        notification_services.notification_publish(
            account_id=account.pk, event_type=EventType.THRESHOLD_CROSSED, payload={"n": index}
        )
        for index in range(3)
    ]
    for event in events[:2]:
        with time_machine.travel(NOW + timedelta(minutes=event.payload["n"]), tick=False):
            notification_services.delivery_attempt(delivery_id=event.deliveries.get().pk)

    failed = list(selectors.failed_deliveries(account.pk))

    assert [delivery.event_id for delivery in failed] == [events[1].pk, events[0].pk]
    assert {delivery.status for delivery in failed} == {Delivery.Status.FAILED}
    assert failed[0].last_error != ""


# --- streams --------------------------------------------------------------------------------


def test_stream_counts_by_processing_type(account, other_account):
    solution = stream_services.solution_create(account=account, name="Production")
    stream_services.solution_create(account=account, name="Staging")
    for name in ("api-calls-metering", "daily-storage-batch", "session-metering"):
        stream_services.stream_import(
            account=account, solution_id=str(solution.pk), stream_config=example(name), actor=ACTOR
        )
    theirs = stream_services.solution_create(account=other_account, name="Theirs")
    stream_services.stream_import(
        account=other_account,
        solution_id=str(theirs.pk),
        stream_config=example("daily-storage-batch"),
        actor=ACTOR,
    )

    assert selectors.stream_counts(account.pk) == selectors.StreamCounts(
        solutions=2, streams=3, realtime=2, batch=1
    )
    assert [stream.name for stream in selectors.recently_updated_streams(other_account.pk)] == [
        "Daily storage"
    ]
