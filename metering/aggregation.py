"""The aggregation rules of a meter type, in one place: SUM adds values, INCREMENT counts records (a
record needs no value to be counted), MAX and MIN keep the extreme (empty until the first record).

Every reader and writer of a meter's value uses these: the usage ledger (Python fold, the SQL of
its one-statement path, the recomputation after a reset), the flush (the empty value a period
starts from), and the readers of the hourly rollups (admin chart, console). Plain strings, not
the ``MeterType.Aggregation`` members: the ledger compares them once per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

SUM = "SUM"
INCREMENT = "INCREMENT"
MAX = "MAX"
MIN = "MIN"
AGGREGATIONS = (SUM, INCREMENT, MAX, MIN)

_ZERO = Decimal(0)


def keeps_extreme(aggregation: str) -> bool:
    """MAX and MIN keep one record's value (and are empty without records); SUM and INCREMENT add."""
    return aggregation == MAX or aggregation == MIN


def empty_value(aggregation: str) -> Decimal | None:
    """A meter's value at the start of a period: 0 for SUM and INCREMENT, empty for MAX and MIN."""
    return None if keeps_extreme(aggregation) else _ZERO


def fold(aggregation: str, held: Decimal | None, values: Sequence[Decimal]) -> Decimal | None:
    """``held`` (a value so far, or empty) advanced by the records whose values are ``values``."""
    if aggregation == SUM:
        return (held or _ZERO) + sum(values, _ZERO)
    if aggregation == INCREMENT:
        return (held or _ZERO) + len(values)
    if not values:
        return held
    extreme = max if aggregation == MAX else min
    candidate = extreme(values)
    return candidate if held is None else extreme(held, candidate)


def combine(aggregation: str, first: Decimal | None, second: Decimal | None) -> Decimal | None:
    """Two partial results of the same aggregation as one (hours into a day, meters into a type):
    SUM and INCREMENT add, MAX and MIN keep the extreme; an empty side changes nothing."""
    if first is None:
        return second
    if second is None:
        return first
    if aggregation == MAX:
        return max(first, second)
    if aggregation == MIN:
        return min(first, second)
    return first + second


def from_totals(
    aggregation: str,
    *,
    total: Decimal | None,
    count: int | None,
    highest: Decimal | None,
    lowest: Decimal | None,
) -> Decimal | None:
    """The aggregate of a set of records known by their sum, count, max and min (an hourly rollup
    row, or the ledger's records of a period): with no records, the empty value."""
    if aggregation == SUM:
        return _ZERO if total is None else total
    if aggregation == INCREMENT:
        return Decimal(count or 0)
    return highest if aggregation == MAX else lowest


def meter_value_sql(*, aggregation: str, held: str, total: str, count: str, highest: str, lowest: str) -> str:
    """PostgreSQL: a meter's value ``held`` advanced by records known by their ``total``, ``count``,
    ``highest`` and ``lowest`` (SQL expressions), for the aggregation named by the SQL expression
    ``aggregation``. The same rule as ``fold``."""
    return (
        f"CASE {aggregation} WHEN '{SUM}' THEN coalesce({held}, 0) + {total} "
        f"WHEN '{INCREMENT}' THEN coalesce({held}, 0) + {count} "
        f"WHEN '{MAX}' THEN GREATEST({held}, {highest}) "
        f"ELSE LEAST({held}, {lowest}) END"
    )


def rollup_merge_sql(*, held: str, incoming: str, greatest: str = "GREATEST", least: str = "LEAST") -> str:
    """The SET list that adds ``incoming`` rollup statistics to the ``held`` row (``ON CONFLICT DO
    UPDATE``): each statistic merged by the rule of the aggregation it serves. ``greatest`` and
    ``least`` are the database's two-argument extremes (SQLite's are ``MAX`` and ``MIN``)."""
    return (
        f"sum = {held}.sum + {incoming}.sum, count = {held}.count + {incoming}.count, "
        f"max = {greatest}({held}.max, {incoming}.max), min = {least}({held}.min, {incoming}.min)"
    )
