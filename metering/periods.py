"""Period boundaries: when a meter's period ends, from its type's cron and timezone.

A meter type's ``resetSchedule.cron`` is a 5-field crontab read in the type's IANA timezone.
Cron fields describe local wall-clock times, so the schedule is walked in wall time (croniter on
naive datetimes, which is plain calendar arithmetic) and each wall time is then turned into one
UTC instant:

- the boundary of a wall time ``W`` is the first instant at which the local clock shows ``W`` or
  later. On a fall-back night a wall time that occurs twice therefore fires once, at its first
  occurrence; on a spring-forward night a wall time that does not exist moves forward to the
  first instant after the gap (for Europe/Stockholm on 2026-03-29, 02:30 fires at 03:00 CEST).
- that mapping never goes backwards as ``W`` grows, so the first schedule entry whose boundary
  lies after ``after`` is the next boundary, and wall times that collapse onto one instant give
  one boundary, never two.

Beat's own crontab timezone handling is never used for this (it has open DST bugs): the reset
sweep compares stored UTC ``period_end`` values with the clock, and this module computes them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter
from croniter.croniter import CroniterError

from config.api.schema import WHITESPACE_CLASS

# Entries skipped before a boundary is found: only wall times already passed on a fall-back
# night are skipped (at most one repeated interval's worth, 60 for an every-minute schedule).
_MAX_SKIPPED_ENTRIES = 1_000
# "R" (random) and "H" (hashed) entries would make boundaries differ between computations.
_NONDETERMINISTIC = re.compile(r"(?<![A-Za-z])[HhRr](?![A-Za-z])")


def _names(*names: str) -> str:
    """Three-letter names in any case, without an inline flag (JSON Schema patterns have none)."""
    return "|".join("".join(f"[{letter.upper()}{letter.lower()}]" for letter in name) for name in names)


def _cron_field(value: str) -> str:
    """A comma-separated list of ``*``, ``v`` or ``v-v``, each optionally ``/step``."""
    item = rf"(?:\*|(?:{value})(?:-(?:{value}))?)(?:/[1-9][0-9]{{0,2}})?"
    return rf"{item}(?:,{item})*"


# The crontab syntax accepted, and documented as the schema's pattern: five fields (minute 0-59,
# hour 0-23, day of month 1-31 or L for the last day, month 1-12 or JAN-DEC, day of week 0-7 or
# SUN-SAT, with 0 and 7 both Sunday), separated by whitespace. croniter reads more (H, R, W, #, ?,
# out-of-range steps); a schedule is refused unless it has this shape, so the schema says exactly
# what is accepted. The only other refusal is a schedule that never fires (30 February).
_MONTHS = _names("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = _names("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_SPACE = f"[{WHITESPACE_CLASS}]"
CRON_PATTERN = (
    f"^{_SPACE}*"
    + f"{_SPACE}+".join(
        [
            _cron_field(r"[0-5]?[0-9]"),
            _cron_field(r"[01]?[0-9]|2[0-3]"),
            rf"(?:L|{_cron_field(r'0?[1-9]|[12][0-9]|3[01]')})",
            _cron_field(rf"0?[1-9]|1[0-2]|{_MONTHS}"),
            _cron_field(rf"[0-7]|{_WEEKDAYS}"),
        ]
    )
    + f"{_SPACE}*$"
)
_CRON = re.compile(CRON_PATTERN.removesuffix("$") + r"\Z")


class InvalidSchedule(ValueError):
    """A cron expression or timezone that cannot define periods."""


def validate_cron(cron: str) -> str:
    """Return the normalised expression, or raise ``InvalidSchedule`` saying what is wrong."""
    if not isinstance(cron, str):
        raise InvalidSchedule("The cron expression must be a string.")
    fields = cron.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            "The cron expression must have 5 fields: minute hour day-of-month month day-of-week."
        )
    normalised = " ".join(fields)
    if _NONDETERMINISTIC.search(normalised):
        raise InvalidSchedule("Random (R) and hashed (H) cron entries are not supported.")
    if not _CRON.match(cron) or not croniter.is_valid(normalised):
        raise InvalidSchedule(
            f"'{normalised}' is not a valid cron expression: each field is *, a value or a range (a-b), "
            "optionally /step, or a comma-separated list of them; names for months and days of the week."
        )
    try:
        # A valid-looking expression may never fire (30 February): it must have a next time.
        croniter(normalised, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        raise InvalidSchedule(f"'{normalised}' never fires.")
    return normalised


@lru_cache(maxsize=1)
def timezone_names() -> frozenset[str]:
    """The IANA names a meter type may use (the installed tz database)."""
    return frozenset(available_timezones())


def validate_timezone(name: str) -> ZoneInfo:
    """An IANA timezone name (``Europe/Stockholm``, ``Etc/UTC``); raise ``InvalidSchedule`` otherwise."""
    if not isinstance(name, str) or name not in timezone_names():
        raise InvalidSchedule(f"'{name}' is not an IANA timezone name.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"'{name}' is not an IANA timezone name.")


def wall_time(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local time the clock in ``zone`` shows at ``instant``."""
    # Through UTC: astimezone() to the zone a datetime already carries would not convert.
    return instant.astimezone(UTC).astimezone(zone).replace(tzinfo=None)


def boundary_of(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which the clock in ``zone`` shows ``wall`` or later."""
    first = wall.replace(tzinfo=zone, fold=0)
    if wall_time(first, zone) == wall:
        # The wall time exists; fold=0 is its first occurrence when it occurs twice.
        return first.astimezone(UTC)
    # A spring-forward gap: the two folds map to instants either side of the transition.
    earlier, later = sorted((first.astimezone(UTC), wall.replace(tzinfo=zone, fold=1).astimezone(UTC)))
    # The transition is the first instant whose wall time is past ``wall``: bisect on seconds
    # (offsets change on whole seconds; gaps are at most a few hours, so ~14 steps).
    low, high = 0, int((later - earlier).total_seconds())
    while low < high:
        middle = (low + high) // 2
        if wall_time(earlier + timedelta(seconds=middle), zone) >= wall:
            high = middle
        else:
            low = middle + 1
    return earlier + timedelta(seconds=low)


def next_period_end(cron: str, tz_name: str, after: datetime) -> datetime:
    """The first boundary of ``cron`` in ``tz_name`` strictly after ``after``, in UTC.

    A meter's first period ends at ``next_period_end(cron, tz, created_at)``; each following
    period starts at the previous end and ends at ``next_period_end(cron, tz, previous_end)``.
    """
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime.")
    zone = validate_timezone(tz_name)
    # Every schedule entry at or before the wall time of ``after`` has a boundary at or before
    # ``after``, so walking from there misses nothing.
    entries = croniter(validate_cron(cron), wall_time(after, zone))
    for _ in range(_MAX_SKIPPED_ENTRIES):
        boundary = boundary_of(entries.get_next(datetime), zone)
        if boundary > after:
            return boundary
    raise InvalidSchedule(f"'{cron}' has no boundary after {after.isoformat()} in {tz_name}.")


def period_containing(cron: str, tz_name: str, now: datetime) -> tuple[datetime, datetime]:
    """``(start, end)`` of the schedule's period holding ``now``: the last boundary at or before
    ``now`` and the first after it (UTC)."""
    end = next_period_end(cron, tz_name, now)
    zone = validate_timezone(tz_name)
    # Walk the schedule's wall times backwards from a little after now (a wall time later than
    # now's can fire before now on a fall-back night); boundaries never decrease with wall time,
    # so the first one at or before now is the period's start.
    entries = croniter(validate_cron(cron), wall_time(now, zone) + timedelta(hours=3))
    for _ in range(10_000):
        boundary = boundary_of(entries.get_prev(datetime), zone)
        if boundary <= now:
            return boundary, end
    return now, end  # pragma: no cover - a valid cron fires within 10,000 entries


def next_fires(cron: str, tz_name: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` period boundaries after ``after`` (UTC), e.g. for the admin's preview."""
    fires: list[datetime] = []
    for _ in range(max(0, min(count, 100))):
        after = next_period_end(cron, tz_name, after)
        fires.append(after)
    return fires
