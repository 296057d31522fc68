"""Flush and reset: at the end of each period a meter's state is written once as a metered record,
the meter is reset, and its next period begins (Usage Engine's "flushing metered records").

One call of ``meters_flush_batch`` is one transaction over at most ``batch_size`` due meters:

1. **Claim.** Meters whose stored ``period_end`` has passed are selected oldest first and locked
   with ``SELECT … FOR NO KEY UPDATE SKIP LOCKED`` (PostgreSQL): concurrent sweeps take disjoint
   meters and never wait for each other; a meter that an ingest transaction is updating right
   now is skipped and taken by the next batch. On SQLite write transactions are serialised
   (``BEGIN IMMEDIATE``), so the claim of one sweep sees the other's committed resets.
2. **Record.** One ``INSERT … SELECT`` copies every claimed meter's state into a metered record,
   ``ON CONFLICT (meter_id, period_start) DO NOTHING``: the unique constraint is the last word on
   *exactly once*, the locks make conflicts not happen in the first place.
3. **Reset and move.** One ``UPDATE … FROM (VALUES …)``: value back to empty (0 for SUM and
   INCREMENT, null for MAX and MIN), groups, group breakdowns, carry fields and the record count
   cleared, ``period_start`` = the old ``period_end`` and ``period_end`` = the next boundary.
4. **Delete** meters marked ``delete_on_reset`` (one ``DELETE``; their records keep
   ``source_meter_id``), **publish** one ``meter.flushed`` notification per record, and hand the
   records to ``flushed_records_emit`` — all in the same transaction, so a worker that dies
   mid-batch leaves nothing half done: the batch rolls back and the next sweep takes it again.

A Meter processor that flushes by stream execution calls ``meters_flush_executed`` at the end of
each run instead (records and reset, the period kept; see there). Records are unique per (meter,
period start, ``execution_ref``), the reference being empty for the flush at period end.

Which meters are due (the claim's condition):

- every meter whose ``period_end`` has passed, updated in the period or not, while the period
  ended inside the type's active window (``period_end <= active_to``, or no ``active_to``);
- after the type's ``active_to``, only a meter that was updated in the period
  (``record_count > 0``). A meter past ``active_to`` with no usage is never touched again: no
  record, no reset, no new period — scheduling stops by itself. Its period moves at most once past
  ``active_to`` (when its last, updated period is flushed), and it stays in that period. If usage
  still reaches it (a late record) or the type's ``active_to`` is extended, it is due again.

The next boundary is computed by ``metering.periods`` from the type's cron in the type's timezone
(DST-correct; the type's current schedule, so a schedule change applies from the next period).
After downtime — when the next boundary after the old ``period_end`` has already passed too —
the overdue period is flushed once and the new period runs from the old ``period_end`` to the
next boundary after *now*, as Usage Engine does: the skipped span is folded into the new period
(no empty records are written for the boundaries that were missed), so periods stay contiguous
and every instant belongs to exactly one record.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.api.serializers import format_timestamp
from metering import aggregation, periods
from metering.models import Meter, MeteredRecord, MeterType
from notifications.models import EventType
from notifications.services import Notification, notification_publish_many

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 5_000  # SQLite's VALUES lists hold three parameters per meter (its limit is 32,766)
FLUSHED_EVENT = EventType.METER_FLUSHED.value

# What the claim reads: no JSON, so locking 500 meters costs little Python. The record's content
# is copied by the database and read back from what was inserted.
_CLAIMED_FIELDS = (
    "id",
    "record_count",
    "last_ingested_at",
    "period_end",
    "delete_on_reset",
    "meter_type__reset_cron",
    "timezone",
    "meter_type__aggregation",
    "account_id",
    "meter_type_id",
    "user_id",
)
# The columns a record document is made from, in this order (RETURNING, or a read on SQLite);
# created_at and updated_at are the flush's ``now``.
_RECORD_COLUMNS = (
    "id",
    "account_id",
    "source_meter_id",
    "user_id",
    "meter_type_id",
    "meter_type_name",
    "timezone",
    "meter_key",
    "value",
    "unit",
    "period_start",
    "period_end",
    "groups",
    "carry_first",
    "carry_last",
    "custom_fields",
    "meter_metadata",
)


@dataclass(frozen=True)
class _Claimed:
    """A claimed (locked) meter: what its reset and next period need."""

    id: uuid.UUID
    record_count: int
    last_ingested_at: datetime | None
    period_end: datetime
    delete_on_reset: bool
    reset_cron: str
    timezone: str
    aggregation: str
    account_id: uuid.UUID
    meter_type_id: uuid.UUID
    user_id: str


@dataclass
class FlushedBatch:
    """What one batch did. ``records`` are the records written, in the shape of
    ``GET /meters/{id}/records`` plus ``accountId``, in the order of ``record_ids``."""

    meter_count: int = 0
    record_ids: list[uuid.UUID] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    deleted_meter_ids: list[uuid.UUID] = field(default_factory=list)


def flushed_records_emit(records: Sequence[dict[str, Any]]) -> None:
    """The stream engine's seam: flushed records are "sent to the stream's downstream nodes".

    Called once per batch with the records that batch wrote (dicts in the shape of
    ``GET /meters/{id}/records`` plus ``accountId``; ``meterKey`` names the Meter processor that
    counted them), **inside the flush transaction**. Whatever connects here must only write to
    the database (the stream engine writes its outbox of deliveries, sent after commit): then
    the records reach the downstream nodes exactly when the flush commits, never for a flush
    that rolled back. It must not do network I/O or commit. The engine connects to it with
    ``flushed_records_hook_register`` (in its AppConfig.ready()).
    """
    for hook in list(FLUSHED_RECORDS_HOOKS):
        hook(records)


# Called by ``flushed_records_emit`` inside the flush transaction (see there); registered by the
# stream engine, which metering never imports.
FLUSHED_RECORDS_HOOKS: list = []


def flushed_records_hook_register(hook) -> None:
    if hook not in FLUSHED_RECORDS_HOOKS:
        FLUSHED_RECORDS_HOOKS.append(hook)


def _json_number(value: Decimal | None) -> int | float | None:
    """As the API answers values: a JSON number (``25``, ``12.5``), null for an empty MAX/MIN."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _record_document(row: Sequence[Any], now: datetime) -> dict[str, Any]:
    """One metered record (a row of ``_RECORD_COLUMNS``, written at ``now``) with the field names
    of DESIGN.md and ``GET /meters/{id}/records``, plus ``accountId``."""
    (
        record_id,
        account_id,
        meter_id,
        user_id,
        meter_type_id,
        meter_type_name,
        zone,
        meter_key,
        value,
        unit,
        period_start,
        period_end,
        groups,
        carry_first,
        carry_last,
        custom_fields,
        meter_metadata,
    ) = row
    stamp = format_timestamp(now)
    return {
        "accountId": str(account_id),
        "carryFirst": carry_first,
        "carryLast": carry_last,
        "createdAt": stamp,
        "customFields": custom_fields,
        "groups": groups,
        "id": str(record_id),
        "meterId": str(meter_id),
        "meterKey": meter_key,
        "meterMetaData": meter_metadata,
        "meterTypeId": str(meter_type_id),
        "meterTypeName": meter_type_name,
        "periodEnd": format_timestamp(period_end),
        "periodStart": format_timestamp(period_start),
        "timezone": zone,
        "unit": unit,
        "updatedAt": stamp,
        "userId": user_id,
        "value": _json_number(value),
    }


def _claim(now: datetime, batch_size: int) -> list[_Claimed]:
    active_window = (
        Q(meter_type__active_to__isnull=True)
        | Q(period_end__lte=F("meter_type__active_to"))
        | Q(record_count__gt=0)
    )
    due = Meter.objects.filter(active_window, period_end__lte=now).order_by("period_end")
    if connection.features.has_select_for_update_skip_locked:
        # NO KEY UPDATE: inserts that reference a meter (its records, the ledger) do not wait.
        # OF self: the meter type rows are read, never locked.
        due = due.select_for_update(skip_locked=True, no_key=True, of=("self",))
    return [_Claimed(*row) for row in due.values_list(*_CLAIMED_FIELDS)[:batch_size]]


class _NextBoundaries:
    """Next period ends, computed once per (schedule, timezone, previous end) in a batch:
    thousands of meters share a schedule and a boundary."""

    def __init__(self, now: datetime):
        self.now = now
        self._cache: dict[tuple[str, str, datetime], datetime] = {}

    def _after(self, cron: str, zone: str, instant: datetime) -> datetime:
        key = (cron, zone, instant)
        if key not in self._cache:
            self._cache[key] = periods.next_period_end(cron, zone, instant)
        return self._cache[key]

    def after(self, meter: _Claimed) -> datetime:
        following = self._after(meter.reset_cron, meter.timezone, meter.period_end)
        if following <= self.now:
            # Downtime: that boundary has passed too. The new period runs to the next boundary
            # after now; the missed span is part of it (no empty records for missed boundaries).
            following = self._after(meter.reset_cron, meter.timezone, self.now)
        return following


def _is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def _rows(name: str, columns: Sequence[tuple[str, str, models.Field]], rows: list[tuple]) -> tuple[str, list]:
    """The batch's per-meter values as a table ``name`` with the given columns, for a FROM clause.

    PostgreSQL: ``unnest()`` of one array per column — three parameters whatever the batch size.
    A 500-row ``VALUES`` list has 1,500 placeholders that psycopg parses again on every batch (its
    cache skips long statements) and the server plans again: measured, that was a third of a
    batch's time. Elsewhere (SQLite): ``(VALUES …)`` with named columns.
    """
    if _is_postgresql():
        arrays = ", ".join(f"%s::{sql_type}[]" for _, sql_type, _ in columns)
        names = ", ".join(column for column, _, _ in columns)
        params = [
            [json.dumps(value) for value in values] if sql_type == "jsonb" else list(values)
            for values, (_, sql_type, _) in zip(zip(*rows, strict=True), columns, strict=True)
        ]
        return f"unnest({arrays}) AS {name}({names})", params
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
    names = ", ".join(f"column{index + 1} AS {column}" for index, (column, _, _) in enumerate(columns))
    params = [
        model_field.get_db_prep_value(value, connection, prepared=False)
        for row in rows
        for value, (_, _, model_field) in zip(row, columns, strict=True)
    ]
    return f"(SELECT {names} FROM (VALUES {placeholders})) AS {name}", params  # noqa: S608


def _ids_match(column: str, ids: list[uuid.UUID]) -> tuple[str, list]:
    if _is_postgresql():
        return f"{column} = ANY(%s::uuid[])", [ids]
    prep = Meter._meta.pk.get_db_prep_value
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", [
        prep(value, connection, prepared=False) for value in ids
    ]


def _insert_records(
    meters: list[_Claimed], record_ids: list[uuid.UUID], now: datetime, execution_ref: str = ""
) -> list[tuple]:
    """One INSERT … SELECT copying the claimed meters' state into their records (JSON columns
    are copied by the database, not round-tripped through Python), ON CONFLICT on the
    (meter, period_start, execution_ref) constraint. Returns the rows written (``_RECORD_COLUMNS``).

    ``execution_ref`` empty: the flush at the period's end. Otherwise the stream execution that
    flushes (``meters_flush_executed``); ``meterMetaData.streamExecution`` names it too."""
    record_field = MeteredRecord._meta.get_field
    extra = {"streamExecution": execution_ref} if execution_ref else {}
    source, params = _rows(
        "v",
        [
            ("meter_id", "uuid", Meter._meta.pk),
            ("record_id", "uuid", record_field("id")),
            ("metadata", "jsonb", record_field("meter_metadata")),
        ],
        [
            (
                meter.id,
                record_id,
                {
                    "recordCount": meter.record_count,
                    "lastIngestedAt": format_timestamp(meter.last_ingested_at),
                    **extra,
                },
            )
            for meter, record_id in zip(meters, record_ids, strict=True)
        ],
    )
    stamp = record_field("created_at").get_db_prep_value(now, connection, prepared=False)
    returning = ", ".join(_RECORD_COLUMNS) if _is_postgresql() else "id"
    sql = (
        f"INSERT INTO {MeteredRecord._meta.db_table} (id, account_id, meter_id, source_meter_id, user_id, "  # noqa: S608
        "meter_type_id, meter_type_name, timezone, meter_key, value, unit, period_start, period_end, groups, "
        "carry_first, carry_last, custom_fields, meter_metadata, execution_ref, created_at, updated_at) "
        "SELECT v.record_id, m.account_id, m.id, m.id, m.user_id, m.meter_type_id, t.name, m.timezone, m.meter_key, "
        "m.value, m.unit, m.period_start, m.period_end, m.groups, m.carry_first, m.carry_last, m.custom_fields, "
        f"v.metadata, %s, %s, %s FROM {source}, {Meter._meta.db_table} AS m, {MeterType._meta.db_table} AS t "
        # The WHERE also settles SQLite's INSERT … SELECT … ON CONFLICT parsing ambiguity.
        "WHERE m.id = v.meter_id AND t.id = m.meter_type_id "
        f"ON CONFLICT (meter_id, period_start, execution_ref) DO NOTHING RETURNING {returning}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [execution_ref, stamp, stamp, *params])
        written = cursor.fetchall()
    if _is_postgresql():
        # psycopg has turned uuid, numeric and timestamptz into Python; jsonb comes as text
        # (Django's connection leaves decoding to JSONField), so the JSON columns are decoded here.
        json_columns = {
            index
            for index, column in enumerate(_RECORD_COLUMNS)
            if isinstance(MeteredRecord._meta.get_field(column), models.JSONField)
        }
        return [
            tuple(json.loads(value) if index in json_columns else value for index, value in enumerate(row))
            for row in written
        ]
    ids = [uuid.UUID(value) if isinstance(value, str) else value for (value,) in written]
    return list(MeteredRecord.objects.filter(pk__in=ids).values_list(*_RECORD_COLUMNS))


def _reset_meters(
    meters: list[_Claimed], now: datetime, new_ends: dict[uuid.UUID, datetime] | None = None
) -> None:
    """One UPDATE … FROM the batch's values: reset the state. With ``new_ends`` (the period-end
    flush) the new period starts at the old end; without (the flush of a stream execution) the
    period is kept and the carry timestamps are cleared too, so the next record carries again."""
    columns = [("id", "uuid", Meter._meta.pk), ("value", "numeric", Meter._meta.get_field("value"))]
    if new_ends is not None:
        columns.append(("period_end", "timestamptz", Meter._meta.get_field("period_end")))
    source, params = _rows(
        "v",
        columns,
        [
            (
                meter.id,
                aggregation.empty_value(meter.aggregation),
                *([new_ends[meter.id]] if new_ends is not None else []),
            )
            for meter in meters
        ],
    )
    table = Meter._meta.db_table
    period = (
        f"period_start = {table}.period_end, period_end = v.period_end"
        if new_ends is not None
        else "carry_first_at = NULL, carry_last_at = NULL"
    )
    stamp = Meter._meta.get_field("updated_at").get_db_prep_value(now, connection, prepared=False)
    sql = (
        f"UPDATE {table} SET value = v.value, groups = '[]', group_breakdowns = '[]', "  # noqa: S608
        f"carry_first = '{{}}', carry_last = '{{}}', record_count = 0, {period}, updated_at = %s "
        f"FROM {source} WHERE {table}.id = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [stamp, *params])


def _count_late_records(meters: list[_Claimed]) -> None:
    """Usage that reached the ledger after a meter's period ended but before this reset (its time
    in the new period) was counted by no meter: fold it into the new period now, in this
    transaction. Only meters that have such records are recomputed; finding them is one probe per
    meter of the ledger's (account, meter type, userId, timestamp) index, so its cost does not grow
    with the ledger (or with the current month's partition)."""
    from metering.ledger import meters_recompute
    from metering.models import UsageRecord

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT m.id FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::text[], %s::timestamptz[]) "  # noqa: S608
                f"AS m(id, account_id, meter_type_id, user_id, period_end) WHERE EXISTS ("
                f"SELECT 1 FROM {UsageRecord._meta.db_table} r WHERE r.account_id = m.account_id "
                f"AND r.meter_type_id = m.meter_type_id AND r.user_id = m.user_id "
                f"AND r.timestamp >= m.period_end AND r.meter_id = m.id)",
                [
                    [m.id for m in meters],
                    [m.account_id for m in meters],
                    [m.meter_type_id for m in meters],
                    [m.user_id for m in meters],
                    [m.period_end for m in meters],
                ],
            )
            late = [row[0] for row in cursor.fetchall()]
    else:
        earliest = min(meter.period_end for meter in meters)
        late = list(
            UsageRecord.objects.filter(meter_id__in=[meter.id for meter in meters], timestamp__gte=earliest)
            .values_list("meter_id", flat=True)
            .distinct()
        )
    if late:
        meters_recompute(meter_ids=late)


def _cascade_is_leaf(relation) -> bool:
    """A CASCADE relation whose rows nothing else points to can be deleted with one statement."""
    return relation.on_delete is models.CASCADE and not relation.related_model._meta.related_objects


def _delete_meters(meter_ids: list[uuid.UUID]) -> None:
    """One DELETE for the batch's delete-on-reset meters; their records keep ``source_meter_id``.

    Relations that SET_NULL (the metered records) are cleared with one UPDATE each, leaf CASCADE
    relations (threshold events) deleted with one DELETE each. Any other ``on_delete`` goes through
    the ORM's collector, which honours it but deletes in chunks of 100 meters.
    """
    relations = Meter._meta.related_objects
    if not all(relation.on_delete is models.SET_NULL or _cascade_is_leaf(relation) for relation in relations):
        Meter.objects.filter(pk__in=meter_ids).delete()
        return
    with connection.cursor() as cursor:
        for relation in relations:
            match, params = _ids_match(relation.field.column, meter_ids)
            if relation.on_delete is models.SET_NULL:
                cursor.execute(
                    f"UPDATE {relation.related_model._meta.db_table} "  # noqa: S608
                    f"SET {relation.field.column} = NULL WHERE {match}",
                    params,
                )
            else:
                cursor.execute(
                    f"DELETE FROM {relation.related_model._meta.db_table} WHERE {match}",  # noqa: S608
                    params,
                )
        match, params = _ids_match("id", meter_ids)
        cursor.execute(f"DELETE FROM {Meter._meta.db_table} WHERE {match}", params)  # noqa: S608


@transaction.atomic
def meters_flush_batch(*, now: datetime | None = None, batch_size: int = 500) -> FlushedBatch:
    """Flush and reset at most ``batch_size`` due meters in one transaction (see the module doc).

    Safe to run twice and concurrently: a meter's period is flushed once, whoever runs it.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}.")
    now = now or timezone.now()
    claimed = _claim(now, batch_size)
    if not claimed:
        return FlushedBatch()

    boundaries = _NextBoundaries(now)
    new_ends: dict[uuid.UUID, datetime] = {}
    meters: list[_Claimed] = []
    for meter in claimed:
        try:
            new_ends[meter.id] = boundaries.after(meter)
        except periods.InvalidSchedule as error:
            # Validated when saved; a timezone that disappears from tzdata must not stop every
            # other meter's reset. The meter stays due and is logged on every sweep.
            logger.error("meter %s not flushed: its type's schedule is unusable (%s)", meter.id, error)
            continue
        meters.append(meter)
    if not meters:
        return FlushedBatch()

    record_ids = [uuid.uuid4() for _ in meters]
    written = _insert_records(meters, record_ids, now)
    if len(written) != len(meters):
        # Only possible if something else wrote a record for the same meter and period without
        # moving the period: that record stands (exactly once), and the period is closed here.
        logger.warning(
            "flush: %d of %d meters already had a record for their period",
            len(meters) - len(written),
            len(meters),
        )
    deleted = [meter.id for meter in meters if meter.delete_on_reset]
    kept = [meter for meter in meters if not meter.delete_on_reset]
    if kept:
        _reset_meters(kept, now, new_ends)
        _count_late_records(kept)
    if deleted:
        _delete_meters(deleted)

    batch = FlushedBatch(
        meter_count=len(meters),
        deleted_meter_ids=deleted,
        record_ids=[row[0] for row in written],
        records=[_record_document(row, now) for row in written],
    )
    notification_publish_many(
        notifications=[
            Notification(
                account_id=uuid.UUID(record["accountId"]),
                event_type=FLUSHED_EVENT,
                payload={key: value for key, value in record.items() if key != "accountId"},
            )
            for record in batch.records
        ]
    )
    flushed_records_emit(batch.records)
    return batch


def meters_flush_executed(
    *, meter_ids: Sequence[uuid.UUID], execution_ref: str, now: datetime | None = None
) -> FlushedBatch:
    """The flush of a Meter processor set to flush by stream execution: at the end of a run, each
    meter it counted is written as a metered record and reset, in the caller's transaction (the
    run's: a run that rolls back flushed nothing).

    Unlike the flush at period end, the meter's period does not move: the record carries the
    period the meter is in (``periodStart``/``periodEnd``; ``createdAt`` is the flush time), the
    ledger keeps counting records of that period into it, and the period still ends on the
    type's schedule (that flush then writes what no execution flushed: usually nothing, with a
    zero value). ``meterMetaData.streamExecution`` is ``execution_ref``, unique per meter and
    period: a second flush with the same reference writes nothing (exactly once). Meters with
    nothing counted since their last flush are skipped; ``deleteOnReset`` applies at period end
    only. The records are returned, not handed to ``flushed_records_emit``: the caller sends
    them to its own downstream nodes.
    """
    if not execution_ref or len(execution_ref) > MeteredRecord._meta.get_field("execution_ref").max_length:
        raise ValueError("execution_ref must be 1 to 255 characters.")
    if not meter_ids:
        return FlushedBatch()
    now = now or timezone.now()
    with transaction.atomic():
        # Id order, as the ledger locks meters: never a deadlock with a concurrent batch.
        locked = Meter.objects.filter(pk__in=sorted(set(meter_ids)), record_count__gt=0).order_by("pk")
        if connection.features.has_select_for_update:
            locked = locked.select_for_update(no_key=True, of=("self",))
        meters = [_Claimed(*row) for row in locked.values_list(*_CLAIMED_FIELDS)]
        if not meters:
            return FlushedBatch()
        written = _insert_records(meters, [uuid.uuid4() for _ in meters], now, execution_ref=execution_ref)
        if len(written) != len(meters):
            logger.warning(
                "flush of %s: %d of %d meters already had a record for it",
                execution_ref,
                len(meters) - len(written),
                len(meters),
            )
        flushed = {row[2] for row in written}
        if flushed:
            _reset_meters([meter for meter in meters if meter.id in flushed], now)
        batch = FlushedBatch(
            meter_count=len(written),
            record_ids=[row[0] for row in written],
            records=[_record_document(row, now) for row in written],
        )
        notification_publish_many(
            notifications=[
                Notification(
                    account_id=uuid.UUID(record["accountId"]),
                    event_type=FLUSHED_EVENT,
                    payload={key: value for key, value in record.items() if key != "accountId"},
                )
                for record in batch.records
            ]
        )
    return batch


def meters_flush_due(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Flush and reset one batch of due meters; the number of meters reset (0: none was due,
    or every due meter is being flushed by another worker right now)."""
    return meters_flush_batch(now=now, batch_size=batch_size).meter_count


def meters_flush_all_due(
    *,
    now: datetime | None = None,
    batch_size: int = 500,
    max_batches: int = 1_000,
    time_budget_seconds: float | None = None,
) -> tuple[int, bool]:
    """Batches until no due meter is left, ``max_batches`` were run or the time budget is spent.

    Returns (meters reset, whether more may remain). Each batch is its own transaction, so work
    done before a crash stays done.
    """
    started = time.monotonic()
    total = 0
    for _ in range(max_batches):
        flushed = meters_flush_due(now=now, batch_size=batch_size)
        total += flushed
        if flushed < batch_size:
            return total, False
        if time_budget_seconds is not None and time.monotonic() - started >= time_budget_seconds:
            break
    return total, True
