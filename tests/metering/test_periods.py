"""Period boundaries: one per local period, in UTC and across the 2026 DST nights.

Europe/Stockholm springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST, 01:00 UTC) and falls
back on 2026-10-25 (03:00 CEST -> 02:00 CET, 01:00 UTC). America/New_York springs forward on
2026-03-08 (02:00 EST -> 03:00 EDT, 07:00 UTC) and falls back on 2026-11-01 (02:00 EDT ->
01:00 EST, 06:00 UTC).
"""

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.periods import (
    CRON_PATTERN,
    InvalidSchedule,
    next_fires,
    next_period_end,
    validate_cron,
    validate_timezone,
)

MONTHLY, DAILY, HOURLY, QUARTER_HOURLY = "0 0 1 * *", "0 0 * * *", "0 * * * *", "*/15 * * * *"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def chain(cron: str, zone: str, after: datetime, count: int) -> list[datetime]:
    """Period ends as meters get them: each period starts where the previous one ended."""
    ends = []
    for _ in range(count):
        after = next_period_end(cron, zone, after)
        ends.append(after)
    return ends


# --- exact boundaries on the DST nights -------------------------------------------------------


@pytest.mark.parametrize(
    "cron,zone,after,expected",
    [
        # Stockholm, spring forward: 02:00-02:59 does not exist; 02:00 and 03:00 are one boundary.
        (
            HOURLY,
            "Europe/Stockholm",
            utc(2026, 3, 28, 23),
            [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)],
        ),
        (
            QUARTER_HOURLY,
            "Europe/Stockholm",
            utc(2026, 3, 29, 0, 30),
            [utc(2026, 3, 29, 0, 45), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 15)],
        ),
        # A daily reset at a nonexistent 02:30 moves forward to 03:00 CEST that day only.
        (
            "30 2 * * *",
            "Europe/Stockholm",
            utc(2026, 3, 28, 12),
            [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)],
        ),
        (DAILY, "Europe/Stockholm", utc(2026, 3, 28, 12), [utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)]),
        (MONTHLY, "Europe/Stockholm", utc(2026, 3, 15), [utc(2026, 3, 31, 22), utc(2026, 4, 30, 22)]),
        # Stockholm, fall back: 02:00-02:59 happens twice and fires once, at its first occurrence.
        (HOURLY, "Europe/Stockholm", utc(2026, 10, 24, 23), [utc(2026, 10, 25, 0), utc(2026, 10, 25, 2)]),
        (
            QUARTER_HOURLY,
            "Europe/Stockholm",
            utc(2026, 10, 25, 0, 30),
            [utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 2, 15)],
        ),
        (
            "30 2 * * *",
            "Europe/Stockholm",
            utc(2026, 10, 24, 12),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (DAILY, "Europe/Stockholm", utc(2026, 10, 24, 12), [utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)]),
        (MONTHLY, "Europe/Stockholm", utc(2026, 10, 15), [utc(2026, 10, 31, 23), utc(2026, 11, 30, 23)]),
        # New York, spring forward.
        (
            HOURLY,
            "America/New_York",
            utc(2026, 3, 8, 5),
            [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)],
        ),
        (
            QUARTER_HOURLY,
            "America/New_York",
            utc(2026, 3, 8, 6, 30),
            [utc(2026, 3, 8, 6, 45), utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 15)],
        ),
        (
            "30 2 * * *",
            "America/New_York",
            utc(2026, 3, 7, 0),
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],
        ),
        (MONTHLY, "America/New_York", utc(2026, 2, 15), [utc(2026, 3, 1, 5), utc(2026, 4, 1, 4)]),
        # New York, fall back: 01:00-01:59 happens twice and fires once.
        (HOURLY, "America/New_York", utc(2026, 11, 1, 4), [utc(2026, 11, 1, 5), utc(2026, 11, 1, 7)]),
        (
            QUARTER_HOURLY,
            "America/New_York",
            utc(2026, 11, 1, 5, 30),
            [utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 7, 0)],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            utc(2026, 10, 31, 0),
            [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        (MONTHLY, "America/New_York", utc(2026, 10, 15), [utc(2026, 11, 1, 4), utc(2026, 12, 1, 5)]),
        # UTC has no DST: the same schedules are plain.
        (HOURLY, "Etc/UTC", utc(2026, 3, 29, 0, 59, 59), [utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)]),
        (MONTHLY, "Etc/UTC", utc(2026, 10, 15), [utc(2026, 11, 1), utc(2026, 12, 1)]),
    ],
)
def test_boundaries_on_dst_nights(cron, zone, after, expected):
    assert chain(cron, zone, after, len(expected)) == expected


def test_hourly_period_that_spans_the_repeated_hour_lasts_two_real_hours():
    start = utc(2026, 10, 25, 0)  # 02:00 CEST, Stockholm
    end = next_period_end(HOURLY, "Europe/Stockholm", start)
    assert end - start == timedelta(hours=2)
    assert end.astimezone(ZoneInfo("Europe/Stockholm")).strftime("%H:%M %Z") == "03:00 CET"


def test_monthly_periods_containing_a_dst_change_are_an_hour_shorter_or_longer():
    zone = "Europe/Stockholm"
    march = next_period_end(MONTHLY, zone, utc(2026, 2, 28, 23))  # from 1 March 00:00 CET
    october = next_period_end(MONTHLY, zone, utc(2026, 9, 30, 22))  # from 1 October 00:00 CEST
    assert march - utc(2026, 2, 28, 23) == timedelta(days=31, hours=-1)
    assert october - utc(2026, 9, 30, 22) == timedelta(days=31, hours=1)


# --- one boundary per local period, for every schedule, zone and night -----------------------

NIGHTS = [
    ("Etc/UTC", date(2026, 3, 29)),
    ("Etc/UTC", date(2026, 10, 25)),
    ("Europe/Stockholm", date(2026, 3, 29)),
    ("Europe/Stockholm", date(2026, 10, 25)),
    ("America/New_York", date(2026, 3, 8)),
    ("America/New_York", date(2026, 11, 1)),
]
# Boundaries in the local day (after its midnight, up to and including the next midnight).
EXPECTED_PER_DAY = {
    ("Etc/UTC", 3): {DAILY: 1, HOURLY: 24, QUARTER_HOURLY: 96},
    ("Etc/UTC", 10): {DAILY: 1, HOURLY: 24, QUARTER_HOURLY: 96},
    ("Europe/Stockholm", 3): {DAILY: 1, HOURLY: 23, QUARTER_HOURLY: 92},
    ("Europe/Stockholm", 10): {DAILY: 1, HOURLY: 24, QUARTER_HOURLY: 96},
    ("America/New_York", 3): {DAILY: 1, HOURLY: 23, QUARTER_HOURLY: 92},
    ("America/New_York", 11): {DAILY: 1, HOURLY: 24, QUARTER_HOURLY: 96},
}


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def wall_exists(wall: datetime, zone: ZoneInfo) -> bool:
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


@pytest.mark.parametrize("zone_name,night", NIGHTS)
@pytest.mark.parametrize("cron", [DAILY, HOURLY, QUARTER_HOURLY])
def test_exactly_one_boundary_per_local_period(zone_name, night, cron):
    zone = ZoneInfo(zone_name)
    start, end = local_midnight(night, zone), local_midnight(night + timedelta(days=1), zone)
    boundaries = chain(cron, zone_name, start, 200)
    in_day = [boundary for boundary in boundaries if boundary <= end]

    assert len(in_day) == EXPECTED_PER_DAY[(zone_name, night.month)][cron]
    assert all(earlier < later for earlier, later in zip(boundaries, boundaries[1:], strict=False))
    walls = [boundary.astimezone(zone).replace(tzinfo=None) for boundary in in_day]
    # A wall time that occurs twice (fall back) is never a boundary twice.
    assert len(set(walls)) == len(walls)
    # Every scheduled wall time that exists in the day is a boundary, exactly once ...
    schedule = croniter(cron, start.astimezone(zone).replace(tzinfo=None))
    scheduled = []
    while (wall := schedule.get_next(datetime)) <= end.astimezone(zone).replace(tzinfo=None):
        scheduled.append(wall)
    existing = [wall for wall in scheduled if wall_exists(wall, zone)]
    assert sorted(set(walls) & set(existing)) == existing
    # ... and any other boundary is where scheduled times inside a spring-forward gap moved to.
    moved = set(walls) - set(existing)
    skipped = [wall for wall in scheduled if not wall_exists(wall, zone)]
    assert moved == set()
    assert all(wall.strftime("%H:%M") in ("02:00", "02:15", "02:30", "02:45") for wall in skipped)


@pytest.mark.parametrize("zone_name", ["Etc/UTC", "Europe/Stockholm", "America/New_York"])
def test_monthly_gives_one_boundary_per_local_month_through_2026(zone_name):
    zone = ZoneInfo(zone_name)
    boundaries = chain(MONTHLY, zone_name, local_midnight(date(2026, 1, 1), zone), 12)
    assert [b.astimezone(zone).strftime("%Y-%m-%d %H:%M") for b in boundaries] == [
        f"{2026 + month // 12}-{month % 12 + 1:02d}-01 00:00" for month in range(1, 13)
    ]


def test_the_first_period_ends_at_the_next_fire_after_creation():
    created = utc(2026, 3, 29, 0, 7, 12, 345000)
    assert next_period_end(QUARTER_HOURLY, "Europe/Stockholm", created) == utc(2026, 3, 29, 0, 15)
    assert next_period_end(HOURLY, "America/New_York", utc(2026, 7, 1, 12, 0)) == utc(2026, 7, 1, 13, 0)


def test_next_fires_lists_the_coming_boundaries():
    assert next_fires(HOURLY, "Europe/Stockholm", utc(2026, 10, 24, 23), 3) == [
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 2),
        utc(2026, 10, 25, 3),
    ]


def test_naive_after_is_refused():
    with pytest.raises(ValueError):
        next_period_end(HOURLY, "Etc/UTC", datetime(2026, 1, 1))


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["0 0 1 * *", "*/15 * * * *", "0 9 * * MON-FRI", "30 2 * * *", "0 0 L * *"])
def test_valid_cron(cron):
    assert validate_cron(cron) == cron


def test_cron_whitespace_is_normalised():
    assert validate_cron("  0  0 1 *\t* ") == "0 0 1 * *"


@pytest.mark.parametrize(
    "cron,reason",
    [
        ("* * * *", "5 fields"),
        ("0 0 1 * * 0", "5 fields"),
        ("", "5 fields"),
        ("@daily", "5 fields"),
        ("61 * * * *", "not a valid"),
        ("0 24 * * *", "not a valid"),
        ("*/0 * * * *", "not a valid"),
        ("0 0 30 2 *", "never fires"),
        ("H * * * *", "Random"),
        ("R 0 * * *", "Random"),
    ],
)
def test_invalid_cron(cron, reason):
    with pytest.raises(InvalidSchedule, match=reason):
        validate_cron(cron)


@pytest.mark.parametrize(
    "cron",
    [
        "0 0 L * *",
        "0 0 * * 1#2",
        "0 0 15W * *",
        "0 0 ? * *",
        "0 0 * * 5L",
        "10-5/1000 * * * *",
        "0 0 1 13 *",
        "0 0 1 * 8",
    ],
)
def test_cron_croniter_reads_but_the_documented_syntax_does_not_have_is_refused(cron):
    refused = cron != "0 0 L * *"
    assert bool(re.fullmatch(CRON_PATTERN, cron)) is not refused
    if refused:
        with pytest.raises(InvalidSchedule, match="not a valid"):
            validate_cron(cron)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.from_regex(CRON_PATTERN, fullmatch=True))
def test_every_cron_the_schema_pattern_allows_is_accepted_unless_it_never_fires(cron):
    # The pattern is the schema's (resetSchedule.cron): a schedule of that shape is refused only
    # when it never fires, the one rule a pattern cannot say.
    try:
        assert validate_cron(cron) == " ".join(cron.split())
    except InvalidSchedule as refused:
        assert str(refused).endswith("never fires.")


@pytest.mark.parametrize("name", ["Etc/UTC", "UTC", "Europe/Stockholm", "America/New_York"])
def test_valid_timezones(name):
    assert validate_timezone(name) == ZoneInfo(name)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "europe/stockholm", "+01:00", "../etc/passwd"])
def test_invalid_timezones(name):
    with pytest.raises(InvalidSchedule):
        validate_timezone(name)
