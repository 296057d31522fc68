"""The ledger's store on PostgreSQL: the statements of ``sql.py``, run through the connection's own
psycopg cursor (server-side binding, binary where psycopg dumps it faster, prepared once per
connection) and Django's execute wrappers and error mapping."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from psycopg import Cursor

import metering.ledger.sql as statements
from config.bound_sql import bound_cursor, bound_execute
from metering.ledger.encoding import ENCODER, encode, json_text, storable_json, storable_text
from metering.ledger.new_meters import new_meter_rows
from metering.ledger.records import (
    DEFAULT_METER_KEY,
    Crossing,
    FreshRecord,
    MetersByPair,
    MeterState,
    MissingMeter,
    Refusal,
    TypeInfo,
)
from metering.ledger.store import TYPE_COLUMN_COUNT, Resolved, Store, group_meters, type_info


class PostgresStore(Store):
    """Arrays bound as parameters (server-side binding, binary where psycopg dumps it faster),
    each statement prepared once per connection: a fixed number of statements per batch."""

    def __init__(self, account_id: uuid.UUID):
        self.account_id = account_id
        self.cursor = bound_cursor()
        self.prepare = True if settings.USAGE_LEDGER_PREPARED_STATEMENTS else None

    def execute(self, statement: str, params: Any) -> Cursor[Any]:
        """Through Django's execute wrappers and error mapping, with server-side binding."""
        return bound_execute(self.cursor, statement, params, self.prepare)

    def resolve(
        self,
        type_ids: Collection[uuid.UUID],
        api_names: Collection[str],
        user_ids: Collection[str],
        with_rules: bool,
    ) -> Resolved:
        statement = statements.RESOLVE.format(rules=statements.RULES if with_rules else "NULL::json")
        rows = self.execute(
            statement,
            {
                "account": self.account_id,
                "ids": list(type_ids),
                "names": list(api_names),
                "users": list(user_ids),
            },
        ).fetchall()
        types: dict[uuid.UUID, TypeInfo] = {}
        for row in rows:
            if row[0] not in types:
                types[row[0]] = type_info(row[:TYPE_COLUMN_COUNT], row[TYPE_COLUMN_COUNT])
        meters_at = TYPE_COLUMN_COUNT + 1
        return (
            types,
            {t.api_name: t for t in types.values()},
            group_meters(row[meters_at:] for row in rows if row[meters_at]),
        )

    def insert_missing_meters(self, missing: Collection[MissingMeter], now: datetime) -> None:
        rows = new_meter_rows(missing, now)
        if not rows:
            return
        columns = [list(column) for column in zip(*rows, strict=True)]
        self.execute(
            statements.INSERT_METERS,
            {
                "account": self.account_id,
                "meter_key": DEFAULT_METER_KEY,
                "now": now,
                "ids": columns[0],
                "types": columns[1],
                "users": columns[2],
                "capacities": columns[3],
                "thresholds": columns[4],
                "values": columns[5],
                "starts": columns[6],
                "ends": columns[7],
                "units": columns[8],
                "zones": columns[9],
            },
        )

    def find_meters(self, pairs: Sequence[tuple[uuid.UUID, str]]) -> MetersByPair:
        return group_meters(
            self.execute(
                statements.FIND_METERS, [self.account_id, [p[0] for p in pairs], [p[1] for p in pairs]]
            ).fetchall()
        )

    def append(
        self,
        records: list[FreshRecord],
        source: str,
        source_ref: str,
        now: datetime,
        claims: Sequence[tuple[str, str]] = (),
    ) -> set[str]:
        return {
            row[0]
            for row in self.execute(
                statements.APPEND, self._batch(records, source, source_ref, now, claims)
            ).fetchall()
        }

    def append_and_count(
        self, records: list[FreshRecord], source: str, source_ref: str, now: datetime
    ) -> dict[str, bool]:
        """``APPEND_COUNT``: the fresh keys, each with whether its meter counted the record."""
        parameters = {
            **self._batch(records, source, source_ref, now),
            "meters": list({r.meter_id for r in records}),
        }
        rows = self.execute(statements.APPEND_COUNT, parameters).fetchall()
        return {key: counted for key, counted in rows}

    def _batch(
        self,
        records: list[FreshRecord],
        source: str,
        source_ref: str,
        now: datetime,
        claims: Sequence[tuple[str, str]] = (),
    ) -> dict[str, Any]:
        # One JSON document (msgspec encodes it in C; jsonb is parsed once, then each field is a
        # cheap lookup): binding eight arrays element by element costs the client more.
        batch = ENCODER.encode(
            [
                (
                    r.key,
                    r.input.request_hash,
                    r.meter_type.id,
                    r.meter_id,
                    r.user_id,
                    r.value,
                    r.timestamp,
                    r.dimensions,
                    *((r.input.source_ref,) if r.input.source_ref else ()),
                )
                for r in records
            ]
            # A refused record's key (no meter): recorded, held by its data correction.
            + [(key, request_hash, None, None, None, None, None, None) for key, request_hash in claims]
        ).decode()
        return {
            "account": self.account_id,
            "now": now,
            "source": source,
            "source_ref": source_ref or "",
            "batch": batch,
        }

    def stored_hashes(self, keys: list[str]) -> dict[str, str]:
        return dict(self.execute(statements.HASHES, [self.account_id, keys]).fetchall())

    def lock_meters(self, meter_ids: list[uuid.UUID]) -> list[MeterState]:
        return [MeterState(*row) for row in self.execute(statements.LOCK_METERS, [meter_ids]).fetchall()]

    def update_meters(self, meters: list[MeterState], now: datetime) -> None:
        self.execute(
            statements.UPDATE_METERS,
            {
                "now": now,
                "ids": [m.id for m in meters],
                "values": [m.value for m in meters],
                "groups": [json_text(m.groups) for m in meters],
                "breakdowns": [json_text(m.group_breakdowns) for m in meters],
                "carry_first": [json_text(m.carry_first) for m in meters],
                "carry_last": [json_text(m.carry_last) for m in meters],
                "carry_first_at": [m.carry_first_at for m in meters],
                "carry_last_at": [m.carry_last_at for m in meters],
                "counts": [m.record_count for m in meters],
            },
        )

    def insert_threshold_events(self, crossings: list[Crossing], now: datetime) -> set[uuid.UUID]:
        rows = self.execute(
            statements.THRESHOLD_EVENTS,
            {
                "account": self.account_id,
                "now": now,
                "ids": [c.event_id for c in crossings],
                "meters": [c.meter_id for c in crossings],
                "positions": [c.threshold_index for c in crossings],
                "names": [c.name for c in crossings],
                "limits": [c.limit for c in crossings],
                "values": [c.value for c in crossings],
                "starts": [c.period_start for c in crossings],
            },
        ).fetchall()
        return {row[0] for row in rows}

    def insert_corrections(
        self, refusals: list[Refusal], source: str, source_ref: str, now: datetime
    ) -> dict[str, uuid.UUID]:
        unique = list({refusal.key: refusal for refusal in reversed(refusals)}.values())
        rows = self.execute(
            statements.CORRECTIONS,
            {
                "account": self.account_id,
                "source": source,
                "source_ref": source_ref or "",
                "now": now,
                "ids": [uuid.uuid4() for _ in unique],
                "nodes": [r.node or "" for r in unique],
                "reasons": [str(r.reason) for r in unique],
                "messages": [storable_text(r.message[:500]) for r in unique],
                "records": [storable_json(encode(r.record)) for r in unique],
                "keys": [r.key for r in unique],
                "hashes": [r.request_hash or "" for r in unique],
                "refs": [r.source_ref for r in unique],
            },
        ).fetchall()
        ids = {key: correction_id for correction_id, key in rows}
        if len(ids) < len(unique):
            # A replay of a record already waiting in data correction: the open correction stands.
            waiting = [r.key for r in unique if r.key not in ids]
            ids.update(
                {
                    key: correction_id
                    for correction_id, key in self.execute(
                        statements.OPEN_CORRECTIONS, [self.account_id, waiting]
                    ).fetchall()
                }
            )
        return ids
