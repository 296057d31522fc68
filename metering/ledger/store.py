"""The ledger's storage, one implementation per database: ``PostgresStore`` (``postgres.py``: a fixed
number of statements per batch, arrays bound as parameters) and ``PortableStore`` (``portable.py``:
the ORM and portable SQL, for SQLite). The steps call only this interface."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from metering.ledger.encoding import from_json
from metering.ledger.records import (
    Crossing,
    FilteringRule,
    FreshRecord,
    MeterChoice,
    MetersByPair,
    MeterState,
    MissingMeter,
    Refusal,
    TypeInfo,
)

# The columns read, in the order ``MeterState`` and ``type_info`` take them.
METER_COLUMNS = (
    "id, meter_type_id, meter_key, user_id, value, groups, group_breakdowns, carry_first, carry_last, "
    "carry_first_at, carry_last_at, record_count, period_start, period_end, capacity, thresholds"
)
TYPE_COLUMNS = (
    "id, api_name, aggregation, status, active_from, active_to, reset_cron, timezone, capacity, "
    "thresholds, dimensions, auto_create_meters, unit"
)
TYPE_COLUMN_COUNT = len(TYPE_COLUMNS.split(","))

# Meter types by id, by api name, and the customers' meters.
Resolved = tuple[dict[uuid.UUID, TypeInfo], dict[str, TypeInfo], MetersByPair]


class Store(ABC):
    """The SQL of each step, for one account."""

    account_id: uuid.UUID

    @abstractmethod
    def resolve(
        self,
        type_ids: Collection[uuid.UUID],
        api_names: Collection[str],
        user_ids: Collection[str],
        with_rules: bool,
    ) -> Resolved:
        """The meter types named (with their filtering rules when asked) and the users' meters of them."""

    @abstractmethod
    def insert_missing_meters(self, missing: Collection[MissingMeter], now: datetime) -> None:
        """Create the meters of ``missing`` that do not exist yet (a concurrent batch may have)."""

    @abstractmethod
    def find_meters(self, pairs: Sequence[tuple[uuid.UUID, str]]) -> MetersByPair:
        """The meters of these (meter type id, user id) pairs."""

    @abstractmethod
    def append(
        self,
        records: list[FreshRecord],
        source: str,
        source_ref: str,
        now: datetime,
        claims: Sequence[tuple[str, str]] = (),
    ) -> set[str]:
        """Insert the keys, append the records whose key is new, roll them up; the new keys.
        ``claims``: ``(key, request hash)`` of refused records, recorded (held by their data
        correction) in the same sorted insert; the new ones among them are returned too."""

    @abstractmethod
    def stored_hashes(self, keys: list[str]) -> dict[str, str]:
        """The request hash each key was first stored with."""

    @abstractmethod
    def lock_meters(self, meter_ids: list[uuid.UUID]) -> list[MeterState]:
        """The meters' rows, locked for update in id order."""

    @abstractmethod
    def update_meters(self, meters: list[MeterState], now: datetime) -> None:
        """Write the meters' new state."""

    @abstractmethod
    def insert_threshold_events(self, crossings: list[Crossing], now: datetime) -> set[uuid.UUID]:
        """Insert the crossings' threshold events (one per threshold and period); the new events' ids."""

    @abstractmethod
    def insert_corrections(
        self, refusals: list[Refusal], source: str, source_ref: str, now: datetime
    ) -> dict[str, uuid.UUID]:
        """Data corrections for the refusals (an open one for the same key stands); ids by key."""


def type_info(row: Sequence[Any], rules: Any) -> TypeInfo:
    """A ``TYPE_COLUMNS`` row (JSON as text or as read) and its rules (``[[name, action, values]]``)."""
    return TypeInfo(
        id=row[0],
        api_name=row[1],
        aggregation=row[2],
        status=row[3],
        active_from=row[4],
        active_to=row[5],
        reset_cron=row[6],
        timezone=row[7],
        capacity=row[8],
        thresholds=from_json(row[9]) or [],
        dimensions=from_json(row[10]) or [],
        auto_create_meters=bool(row[11]),
        unit=row[12],
        rules=[
            FilteringRule(name, action, [str(value) for value in (from_json(values) or [])])
            for name, action, values in (from_json(rules) or [])
        ],
    )


def group_meters(rows: Iterable[Sequence[Any]]) -> MetersByPair:
    """``(meter_id, meter_type_id, meter_key, user_id, has_thresholds)`` rows by (type, user)."""
    grouped: MetersByPair = {}
    for meter_id, type_id, meter_key, user_id, has_thresholds in rows:
        grouped.setdefault((type_id, user_id), []).append(
            MeterChoice(meter_id, meter_key, bool(has_thresholds))
        )
    return grouped
