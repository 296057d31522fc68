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

# Entries skipped before a boundary is found: only wall times already passed on a fall-back
# night are skipped (at most one repeated interval's worth, 60 for an every-minute schedule).
_MAX_SKIPPED_ENTRIES = 1_000
# "R" (random) and "H" (hashed) entries would make boundaries differ between computations.
_NONDETERMINISTIC = re.compile(r"(?<![A-Za-z])[HhRr](?![A-Za-z])")


class InvalidSchedule(ValueError):
    """A cron expression or timezone that cannot define periods."""


def validate_cron(cron: str) -> str:
    """Return the normalised expression, or raise ``InvalidSchedule`` saying what is wrong."""
    if not isinstance(cron, str):
        raise InvalidSchedule("The cron expression must be a string.")
    fields = cron.split()
    if len(fields) != 5:
        raise InvalidSchedule("The cron expression must have 5 fields: minute hour day-of-month month day-of-week.")
    normalised = " ".join(fields)
    if _NONDETERMINISTIC.search(normalised):
        raise InvalidSchedule("Random (R) and hashed (H) cron entries are not supported.")
    if not croniter.is_valid(normalised):
        raise InvalidSchedule(f"'{normalised}' is not a valid cron expression.")
    try:
        # A valid-looking expression may never fire (30 February): it must have a next time.
        croniter(normalised, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        raise InvalidSchedule(f"'{normalised}' never fires.")
    return normalised


@lru_cache(maxsize=1)
def _timezone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_timezone(name: str) -> ZoneInfo:
    """An IANA timezone name (``Europe/Stockholm``, ``Etc/UTC``); raise ``InvalidSchedule`` otherwise."""
    if not isinstance(name, str) or name not in _timezone_names():
        raise InvalidSchedule(f"'{name}' is not an IANA timezone name.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"'{name}' is not an IANA timezone name.")


def _wall_time(instant: datetime, zone: ZoneInfo) -> datetime:
    # Through UTC: astimezone() to the zone a datetime already carries would not convert.
    return instant.astimezone(UTC).astimezone(zone).replace(tzinfo=None)


def boundary_of(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which the clock in ``zone`` shows ``wall`` or later."""
    first = wall.replace(tzinfo=zone, fold=0)
    if _wall_time(first, zone) == wall:
        # The wall time exists; fold=0 is its first occurrence when it occurs twice.
        return first.astimezone(UTC)
    # A spring-forward gap: the two folds map to instants either side of the transition.
    earlier, later = sorted(
        (first.astimezone(UTC), wall.replace(tzinfo=zone, fold=1).astimezone(UTC))
    )
    # The transition is the first instant whose wall time is past ``wall``: bisect on seconds
    # (offsets change on whole seconds; gaps are at most a few hours, so ~14 steps).
    low, high = 0, int((later - earlier).total_seconds())
    while low < high:
        middle = (low + high) // 2
        if _wall_time(earlier + timedelta(seconds=middle), zone) >= wall:
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
    entries = croniter(validate_cron(cron), _wall_time(after, zone))
    for _ in range(_MAX_SKIPPED_ENTRIES):
        boundary = boundary_of(entries.get_next(datetime), zone)
        if boundary > after:
            return boundary
    raise InvalidSchedule(f"'{cron}' has no boundary after {after.isoformat()} in {tz_name}.")


def next_fires(cron: str, tz_name: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` period boundaries after ``after`` (UTC), e.g. for the admin's preview."""
    fires: list[datetime] = []
    for _ in range(max(0, min(count, 100))):
        after = next_period_end(cron, tz_name, after)
        fires.append(after)
    return fires
