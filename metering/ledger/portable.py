"""The ledger's store on any other database (SQLite, the embedded default): the same steps through
the ORM and portable SQL. SQLite runs one writer at a time (transactions begin IMMEDIATE): nothing
races."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Q

from metering.aggregation import rollup_merge_sql
from metering.ledger.encoding import encode, from_json
from metering.ledger.new_meters import new_meter_rows
from metering.ledger.records import (
    DEFAULT_METER_KEY,
    SQLITE_CHUNK,
    Crossing,
    FilteringRule,
    FreshRecord,
    MetersByPair,
    MeterState,
    MissingMeter,
    Refusal,
)
from metering.ledger.store import METER_COLUMNS, TYPE_COLUMNS, Resolved, Store, group_meters, type_info
from metering.models import (
    DataCorrection,
    Meter,
    MeterEventFilteringRule,
    MeterType,
    UsageDedupKey,
    UsageRecord,
)


class PortableStore(Store):
    """The ORM and portable SQL, for SQLite."""

    def __init__(self, account_id: uuid.UUID):
        self.account_id = account_id
        self.ops = connection.ops

    def _uuid(self, value: uuid.UUID) -> Any:
        return value if connection.features.has_native_uuid_field else value.hex

    def _datetime(self, value: datetime) -> Any:
        return self.ops.adapt_datetimefield_value(value)

    def _decimal(self, value: Decimal | None) -> Any:
        return None if value is None else self.ops.adapt_decimalfield_value(value, 38, 12)

    def resolve(
        self,
        type_ids: Collection[uuid.UUID],
        api_names: Collection[str],
        user_ids: Collection[str],
        with_rules: bool,
    ) -> Resolved:
        rows = list(
            MeterType.objects.filter(account_id=self.account_id)
            .filter(Q(pk__in=type_ids) | Q(api_name__in=api_names))
            .values_list(*[column.strip() for column in TYPE_COLUMNS.split(",")])
        )
        rules: dict[uuid.UUID, list[FilteringRule]] = {}
        if with_rules and rows:
            for rule in MeterEventFilteringRule.objects.filter(
                meter_type_id__in=[row[0] for row in rows]
            ).order_by("created_at"):
                rules.setdefault(rule.meter_type_id, []).append(
                    FilteringRule(rule.dimension_name, rule.action, rule.dimension_values)
                )
        types = {row[0]: type_info(row, rules.get(row[0])) for row in rows}
        meters = (
            Meter.objects.filter(
                account_id=self.account_id, meter_type_id__in=list(types), user_id__in=list(user_ids)
            ).values_list("id", "meter_type_id", "meter_key", "user_id", "thresholds")
            if types
            else []
        )
        return types, {t.api_name: t for t in types.values()}, group_meters(meters)

    def insert_missing_meters(self, missing: Collection[MissingMeter], now: datetime) -> None:
        Meter.objects.bulk_create(
            [
                Meter(
                    id=row.id,
                    account_id=self.account_id,
                    meter_type_id=row.meter_type_id,
                    meter_key=DEFAULT_METER_KEY,
                    user_id=row.user_id,
                    capacity=row.capacity,
                    thresholds=json.loads(row.thresholds),
                    value=row.value,
                    period_start=row.period_start,
                    period_end=row.period_end,
                    unit=row.unit,
                    timezone=row.timezone,
                    created_at=now,
                    updated_at=now,
                )
                for row in new_meter_rows(missing, now)
            ],
            ignore_conflicts=True,
        )

    def find_meters(self, pairs: Sequence[tuple[uuid.UUID, str]]) -> MetersByPair:
        wanted = set(pairs)
        rows = Meter.objects.filter(
            account_id=self.account_id,
            meter_type_id__in={p[0] for p in pairs},
            user_id__in={p[1] for p in pairs},
        ).values_list("id", "meter_type_id", "meter_key", "user_id", "thresholds")
        return group_meters(row for row in rows if (row[1], row[3]) in wanted)

    def append(
        self,
        records: list[FreshRecord],
        source: str,
        source_ref: str,
        now: datetime,
        claims: Sequence[tuple[str, str]] = (),
    ) -> set[str]:
        fresh: set[str] = set()
        # Every key of the batch in one sorted order: the records' and the refused records' (held
        # by their data correction).
        ordered = sorted(
            [(record.key, record.input.request_hash, False) for record in records]
            + [(key, request_hash, True) for key, request_hash in claims]
        )
        with connection.cursor() as cursor:
            for start in range(0, len(ordered), SQLITE_CHUNK):
                chunk = ordered[start : start + SQLITE_CHUNK]
                params: list[Any] = []
                for key, request_hash, held in chunk:
                    params += [self._uuid(self.account_id), key, request_hash, self._datetime(now), held]
                cursor.execute(
                    "INSERT INTO metering_usagededupkey (account_id, key, request_hash, created_at, "  # noqa: S608
                    f"held_by_correction) VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * len(chunk))} "
                    "ON CONFLICT DO NOTHING RETURNING key",
                    params,
                )
                fresh.update(row[0] for row in cursor.fetchall())
        appended = [record for record in records if record.key in fresh]
        UsageRecord.objects.bulk_create(
            [
                UsageRecord(
                    account_id=self.account_id,
                    meter_type_id=r.meter_type.id,
                    meter_id=r.bound_meter_id,
                    user_id=r.user_id,
                    value=r.value,
                    timestamp=r.timestamp,
                    dimensions=r.dimensions or {},
                    source=source,
                    source_ref=r.input.source_ref or source_ref or "",
                    idempotency_key=r.key,
                    created_at=now,
                )
                for r in appended
            ],
            batch_size=SQLITE_CHUNK,
        )
        self._roll_up(appended)
        return fresh

    def _roll_up(self, appended: list[FreshRecord]) -> None:
        hours: dict[tuple[uuid.UUID, str, datetime], list[Decimal]] = {}
        for record in appended:
            hour = record.timestamp.replace(minute=0, second=0, microsecond=0)
            hours.setdefault((record.meter_type.id, record.user_id, hour), []).append(record.value)
        rows = [
            [
                self._uuid(self.account_id),
                self._uuid(type_id),
                user_id,
                self._datetime(hour),
                self._decimal(sum(values, Decimal(0))),
                len(values),
                self._decimal(max(values)),
                self._decimal(min(values)),
            ]
            for (type_id, user_id, hour), values in sorted(hours.items())
        ]
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO metering_usagerollup (account_id, meter_type_id, user_id, hour, sum, count, max, min) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (account_id, meter_type_id, user_id, hour) DO UPDATE SET "
                + rollup_merge_sql(
                    held="metering_usagerollup", incoming="excluded", greatest="MAX", least="MIN"
                ),
                rows,
            )

    def stored_hashes(self, keys: list[str]) -> dict[str, str]:
        return dict(
            UsageDedupKey.objects.filter(account_id=self.account_id, key__in=keys).values_list(
                "key", "request_hash"
            )
        )

    def lock_meters(self, meter_ids: list[uuid.UUID]) -> list[MeterState]:
        rows = (
            Meter.objects.filter(pk__in=meter_ids)
            .order_by("id")
            .values_list(*[column.strip() for column in METER_COLUMNS.split(",")])
        )
        return [MeterState(*row) for row in rows]

    def update_meters(self, meters: list[MeterState], now: datetime) -> None:
        Meter.objects.bulk_update(
            [
                Meter(
                    id=m.id,
                    value=m.value,
                    groups=from_json(m.groups),
                    group_breakdowns=from_json(m.group_breakdowns),
                    carry_first=from_json(m.carry_first),
                    carry_last=from_json(m.carry_last),
                    carry_first_at=m.carry_first_at,
                    carry_last_at=m.carry_last_at,
                    record_count=m.record_count,
                    last_ingested_at=now,
                    updated_at=now,
                )
                for m in meters
            ],
            [
                "value",
                "groups",
                "group_breakdowns",
                "carry_first",
                "carry_last",
                "carry_first_at",
                "carry_last_at",
                "record_count",
                "last_ingested_at",
                "updated_at",
            ],
        )

    def insert_threshold_events(self, crossings: list[Crossing], now: datetime) -> set[uuid.UUID]:
        inserted = set()
        with connection.cursor() as cursor:
            for crossing in sorted(crossings, key=lambda c: (c.meter_id, c.threshold_index)):
                event_id = crossing.event_id
                assert event_id is not None  # record_crossings gives each crossing its event's id
                cursor.execute(
                    "INSERT INTO metering_thresholdevent (id, account_id, meter_id, threshold_index, name, "
                    "threshold_value, value, period_start, crossed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (meter_id, threshold_index, period_start) DO NOTHING RETURNING id",
                    [
                        self._uuid(event_id),
                        self._uuid(self.account_id),
                        self._uuid(crossing.meter_id),
                        crossing.threshold_index,
                        crossing.name,
                        self._decimal(crossing.limit),
                        self._decimal(crossing.value),
                        self._datetime(crossing.period_start),
                        self._datetime(now),
                    ],
                )
                if cursor.fetchall():
                    inserted.add(event_id)
        return inserted

    def insert_corrections(
        self, refusals: list[Refusal], source: str, source_ref: str, now: datetime
    ) -> dict[str, uuid.UUID]:
        unique = list({refusal.key: refusal for refusal in reversed(refusals)}.values())
        waiting = dict(
            DataCorrection.objects.filter(
                account_id=self.account_id,
                status=DataCorrection.Status.OPEN,
                idempotency_key__in=[r.key for r in unique],
            ).values_list("idempotency_key", "id")
        )
        created = [
            DataCorrection(
                account_id=self.account_id,
                source=source,
                source_ref=r.source_ref or source_ref or "",
                node=r.node or "",
                reason=r.reason,
                message=r.message[:500],
                record=json.loads(encode(r.record)),
                idempotency_key=r.key,
                request_hash=r.request_hash or "",
                created_at=now,
                updated_at=now,
            )
            for r in sorted(unique, key=lambda r: r.key)
            if r.key not in waiting
        ]
        DataCorrection.objects.bulk_create(created)
        return {**waiting, **{correction.idempotency_key: correction.id for correction in created}}
