"""The usage ledger: the one service every way of usage in goes through.

``usage_apply`` takes a batch of records (the /ingest API, report usage, a stream's meter
processor, data-correction reprocessing) and, in one transaction:

1. validates each record; a record that cannot be counted becomes a ``DataCorrection`` with its
   reason (never dropped), one insert for the batch;
2. deduplicates and appends: one statement inserts the batch's idempotency keys
   (``INSERT … ON CONFLICT DO NOTHING RETURNING``), appends only the fresh records to the ledger
   and adds them to the hourly rollups (``ON CONFLICT DO UPDATE`` with ``+``, ``greatest``,
   ``least``). A key twice in the batch, or already in the ledger, is a duplicate: it is
   reported and never touches an aggregate;
3. locks the affected meters in id order (``SELECT … ORDER BY id FOR UPDATE``), computes their new
   state in Python from the fresh records of their open period, and writes it with one
   ``UPDATE … FROM unnest(…)``;
4. records each threshold crossed upward once per period (``ON CONFLICT DO NOTHING``) and
   publishes ``threshold.crossed`` in the same transaction.

A meter counts only the records of its open period ``[periodStart, periodEnd)`` (as Usage Engine
meters do). Earlier records are in the ledger and in usage queries but change no meter; records
at or after ``periodEnd`` (a period that ended but is not flushed yet) are in the ledger and are
folded into the meter's next period by ``meters_recompute`` when the meter is reset.

Locks are taken in one global order, so concurrent batches never deadlock: new meters (sorted),
meter rows (by id), idempotency keys (sorted), rollup rows (sorted), then rows only this
transaction can write (threshold events of meters it holds, new corrections sorted by key).

PostgreSQL runs a fixed number of statements per batch whatever its size (arrays bound as
parameters, prepared once per connection); SQLite (the embedded default, one writer at a time)
runs the same steps with portable SQL.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import msgspec
from croniter import croniter
from django.conf import settings
from django.db import connection, transaction
from django.utils.timezone import now as utc_now

from config.metrics import USAGE_RECORDS
from metering import periods
from metering.models import DataCorrection, MeterType, UsageSource

Reason = DataCorrection.Reason

# numeric(38, 12): values must stay below 10^26 in magnitude; twelve decimal places are kept.
VALUE_LIMIT = Decimal(10) ** 26
QUANTUM = Decimal("1E-12")
# Enough digits that sums of numeric(38, 12) values are exact.
DECIMAL_CONTEXT = decimal.Context(prec=80)
MAX_KEY_LENGTH = 255
MAX_USER_ID_LENGTH = 320
DEFAULT_METER_KEY = "default"
SQLITE_CHUNK = 200


class Outcome:
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    CORRECTION = "CORRECTION"
    EXCLUDED = "EXCLUDED"


@dataclass(slots=True)
class UsageInput:
    """One usage record as a caller hands it over (raw values: validation is the ledger's job).

    ``timestamp``: an aware datetime, ISO 8601 text or Unix milliseconds; empty means now.
    ``meter_type_id`` or ``meter_api_name`` names the meter type; ``meter_key`` picks the meter
    when a customer has several of that type (otherwise their only meter is used).
    ``idempotency_key``: the caller's dedup key, already namespaced; empty gets a generated one.
    ``fields``: what carry and group-by fields are read from (default: ``dimensions``).
    ``group``: the guiding rule / category the record matched (the meter's ``groups``).
    ``record``: the record as received, kept by data correction.
    ``source_ref``: where the record came from (a request id), in place of ``usage_apply``'s, so
    that one batch can carry the records of several requests.
    """

    user_id: Any = None
    value: Any = None
    timestamp: Any = None
    meter_type_id: Any = None
    meter_api_name: str | None = None
    meter_key: str | None = None
    dimensions: Any = None
    idempotency_key: str | None = None
    request_hash: str = ""
    fields: dict[str, Any] | None = None
    group: str | None = None
    node: str = ""
    record: Any = None
    source_ref: str = ""


@dataclass(frozen=True, slots=True)
class MeterOptions:
    """How a meter processor shapes the meter state. ``group_by=None`` uses the type's dimensions."""

    group_by: tuple[str, ...] | None = None
    carry_first: tuple[str, ...] = ()
    carry_last: tuple[str, ...] = ()


@dataclass(slots=True)
class RecordResult:
    outcome: str
    idempotency_key: str
    reason: str = ""
    message: str = ""
    correction_id: uuid.UUID | None = None
    meter_id: uuid.UUID | None = None
    counted: bool = False  # changed its meter (its time is in the meter's open period)
    key_reused: bool = False  # a duplicate whose first request had another body


@dataclass(slots=True)
class ThresholdCrossing:
    event_id: uuid.UUID
    meter_id: uuid.UUID
    threshold_index: int
    name: str
    limit: Decimal
    value: Decimal


@dataclass(slots=True)
class UsageResult:
    results: list[RecordResult]
    accepted: int = 0
    duplicates: int = 0
    corrections: int = 0
    excluded: int = 0
    meters_updated: int = 0
    crossings: list[ThresholdCrossing] = field(default_factory=list)


# --- parsing ----------------------------------------------------------------------------------


class RecordRefused(Exception):
    """A record the ledger cannot count, with the data-correction reason."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message


_INT_LIMIT = 10**26


def parse_value(raw: Any) -> Decimal:
    """A finite number inside numeric(38, 12), rounded to 12 decimal places."""
    if type(raw) is int:  # the common case, first (a bool is not an int here)
        if -_INT_LIMIT < raw < _INT_LIMIT:
            return Decimal(raw)
        raise RecordRefused(Reason.VALUE_OUT_OF_RANGE, "The value must be below 10^26 in magnitude.")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise RecordRefused(Reason.MISSING_VALUE, "The record has no value.")
    if isinstance(raw, bool):
        raise RecordRefused(Reason.NON_NUMERIC_VALUE, "The value must be a number, not a boolean.")
    if isinstance(raw, Decimal):
        number = raw
    elif isinstance(raw, int):
        number = Decimal(raw)
    elif isinstance(raw, float):
        number = (
            Decimal(repr(raw)) if raw == raw and raw not in (float("inf"), float("-inf")) else Decimal("NaN")
        )
    elif isinstance(raw, str):
        try:
            number = Decimal(raw.strip())
        except decimal.InvalidOperation:
            raise RecordRefused(Reason.NON_NUMERIC_VALUE, f"The value {raw[:40]!r} is not a number.")
    else:
        raise RecordRefused(
            Reason.NON_NUMERIC_VALUE, f"The value must be a number, not {type(raw).__name__}."
        )
    if not number.is_finite():
        raise RecordRefused(Reason.NON_NUMERIC_VALUE, "The value must be a finite number.")
    if abs(number) >= VALUE_LIMIT:
        raise RecordRefused(Reason.VALUE_OUT_OF_RANGE, "The value must be below 10^26 in magnitude.")
    if number.as_tuple().exponent < -12:
        number = number.quantize(QUANTUM, context=DECIMAL_CONTEXT)
    return number


def parse_timestamp(raw: Any, now: datetime) -> datetime:
    """An aware datetime, ISO 8601 text with a timezone, or Unix milliseconds; empty means now."""
    if raw is None or raw == "":
        return now
    try:
        if isinstance(raw, datetime):
            moment = raw
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return datetime.fromtimestamp(raw / 1000, UTC)
        elif isinstance(raw, str):
            text = raw.strip()
            if text.isdigit():
                return datetime.fromtimestamp(int(text) / 1000, UTC)
            moment = datetime.fromisoformat(text)
        else:
            raise ValueError
        if moment.tzinfo is None:
            raise RecordRefused(
                Reason.INVALID_TIMESTAMP, "The timestamp must carry a timezone (Z or an offset)."
            )
        # In UTC, 0001-01-01T00:00+01:00 is before year 1 and 9999-12-31T23:59-01:00 after 9999.
        return moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise RecordRefused(
            Reason.INVALID_TIMESTAMP, f"The timestamp {str(raw)[:40]!r} is not ISO 8601 or Unix milliseconds."
        )


def normalise_key(key: str) -> str:
    """Keys longer than the column are replaced by their SHA-256 (still unique, still stable)."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


_ENCODER = msgspec.json.Encoder(decimal_format="number")
_SORTED_ENCODER = msgspec.json.Encoder(decimal_format="number", order="sorted")


def request_hash(body: Any) -> str:
    """A stable hash of a request body, to tell a replay from a reused idempotency key."""
    return hashlib.sha256(_SORTED_ENCODER.encode(body)).hexdigest()


def _number(value: Decimal | None) -> int | float | None:
    """A Decimal as a JSON number (meter groups, notification payloads)."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _encode(value: Any) -> str:
    return _ENCODER.encode(value).decode()


# A JSON \u0000 escape (not an escaped backslash followed by "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _storable_json(text: str) -> str:
    """JSON text PostgreSQL's jsonb takes: a refused record keeps every field, its NUL characters
    (records from streams may hold them) shown as U+FFFD, so that the correction can be stored."""
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def _storable_text(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def _json_text(value: Any) -> str:
    """A JSON column's value as text (rows read from PostgreSQL already hold it as text)."""
    return value if isinstance(value, str) else _encode(value)


# --- period boundaries for meters created on first usage --------------------------------------

_period_cache: dict[tuple[str, str], tuple[datetime, datetime]] = {}


def current_period(cron: str, tz_name: str, now: datetime) -> tuple[datetime, datetime]:
    """``(start, end)`` of the schedule's period holding ``now``: the last boundary at or before
    ``now`` and the first after it (UTC). Cached until ``end``."""
    key = (cron, tz_name)
    cached = _period_cache.get(key)
    if cached is not None and cached[0] <= now < cached[1]:
        return cached
    end = periods.next_period_end(cron, tz_name, now)
    zone = periods.validate_timezone(tz_name)
    # Walk the schedule's wall times backwards from a little after now (a wall time later than
    # now's can fire before now on a fall-back night); boundaries never decrease with wall time,
    # so the first one at or before now is the period's start.
    entries = croniter(periods.validate_cron(cron), periods._wall_time(now, zone) + timedelta(hours=3))
    start = None
    for _ in range(10_000):
        boundary = periods.boundary_of(entries.get_prev(datetime), zone)
        if boundary <= now:
            start = boundary
            break
    if start is None:  # pragma: no cover - a valid cron fires within 10,000 entries
        start = now
    if len(_period_cache) > 10_000:
        _period_cache.clear()
    _period_cache[key] = (start, end)
    return start, end


# --- the service ------------------------------------------------------------------------------

# Plain strings: comparing with the TextChoices members costs an enum lookup per record.
SUM, INCREMENT, MAX, MIN = "SUM", "INCREMENT", "MAX", "MIN"
ACTIVE = "ACTIVE"
INCLUDE = "INCLUDE"


@dataclass(slots=True, eq=False)  # hashed by identity: cheap dictionary keys per record
class _TypeInfo:
    id: uuid.UUID
    api_name: str
    aggregation: str
    status: str
    active_from: datetime
    active_to: datetime | None
    reset_cron: str
    timezone: str
    capacity: Decimal | None
    thresholds: list
    dimensions: list
    auto_create_meters: bool
    rules: list  # [(dimension_name, action, values)]


@dataclass(slots=True)
class _MeterState:
    """A meter row as locked for update (JSON columns as read: text on PostgreSQL)."""

    id: uuid.UUID
    meter_type_id: uuid.UUID
    meter_key: str
    user_id: str
    value: Decimal | None
    groups: Any
    group_breakdowns: Any
    carry_first: Any
    carry_last: Any
    carry_first_at: datetime | None
    carry_last_at: datetime | None
    record_count: int
    period_start: datetime
    period_end: datetime
    capacity: Decimal | None
    thresholds: Any


@dataclass(slots=True)
class _Fresh:
    """A valid record bound for the ledger."""

    index: int
    input: UsageInput
    key: str
    meter_type: _TypeInfo
    user_id: str
    value: Decimal
    timestamp: datetime
    dimensions: dict
    meter_id: uuid.UUID | None = None
    meter_has_thresholds: bool = False


@dataclass(slots=True)
class _Refusal:
    index: int
    key: str
    request_hash: str
    reason: str
    message: str
    record: Any
    node: str
    source_ref: str = ""


@dataclass(slots=True)
class _Crossing:
    meter_id: uuid.UUID
    threshold_index: int
    name: str
    limit: Decimal
    value: Decimal
    period_start: datetime
    event_id: uuid.UUID | None = None


def usage_apply(
    *,
    account_id: uuid.UUID,
    records: Sequence[UsageInput],
    source: str,
    source_ref: str = "",
    options: MeterOptions | None = None,
    apply_filtering_rules: bool = False,
    record_corrections: bool = True,
    now: datetime | None = None,
) -> UsageResult:
    """Validate, deduplicate, append and count a batch of usage records (see the module docstring).

    ``apply_filtering_rules``: drop the records a meter type's filtering rules exclude (reported
    as EXCLUDED, not stored). ``record_corrections=False`` leaves refused records to the caller
    (data-correction reprocessing updates its own rows); they are reported either way.
    ``source_ref``: the ledger's and data correction's reference for records without their own.
    """
    if source not in UsageSource.values:
        raise ValueError(f"Unknown usage source {source!r}.")
    now = now or utc_now()
    if (
        records
        and options is None
        and record_corrections
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
    ):
        answered = _apply_simple(account_id, records, source, source_ref, apply_filtering_rules, now)
        if answered is not None:
            return _counted(source, answered)
    return _counted(
        source,
        _apply_batch(
            account_id, records, source, source_ref, options, apply_filtering_rules, record_corrections, now
        ),
    )


def _counted(source: str, result: UsageResult) -> UsageResult:
    """Adds the batch's outcomes to ``usage_records_total{source, outcome}`` (GET /metrics)."""
    for outcome, number in (
        ("accepted", result.accepted),
        ("duplicate", result.duplicates),
        ("correction", result.corrections),
        ("excluded", result.excluded),
    ):
        if number:
            USAGE_RECORDS.labels(source, outcome).inc(number)
    return result


def usage_result(results: list[RecordResult]) -> UsageResult:
    """The counts of some records' outcomes (a part of a batch: one request's share)."""
    return _result(results)


def _result(
    results: list[RecordResult], changed: int = 0, crossings: Sequence[_Crossing] = ()
) -> UsageResult:
    result = UsageResult(results=results)
    for item in results:
        if item.outcome == Outcome.ACCEPTED:
            result.accepted += 1
        elif item.outcome == Outcome.DUPLICATE:
            result.duplicates += 1
        elif item.outcome == Outcome.CORRECTION:
            result.corrections += 1
        else:
            result.excluded += 1
    result.meters_updated = changed
    result.crossings = [
        ThresholdCrossing(c.event_id, c.meter_id, c.threshold_index, c.name, c.limit, c.value)
        for c in crossings
        if c.event_id is not None
    ]
    return result


def _apply_simple(
    account_id: uuid.UUID,
    records: Sequence[UsageInput],
    source: str,
    source_ref: str,
    apply_filtering_rules: bool,
    now: datetime,
) -> UsageResult | None:
    """A batch on PostgreSQL outside any transaction (the hot paths): one read, then one statement
    that is its own transaction (``APPEND_COUNT``): dedup keys, ledger rows, rollups and meter
    updates, locks in the same order as ``_apply_batch``. Answers None (the caller runs the batch
    path) for anything it does not cover: a refused record, a meter to create, groups, breakdowns
    or thresholds."""
    backend = _PostgresBackend(account_id)
    results: list[RecordResult | None] = [None] * len(records)
    refusals: list[_Refusal] = []
    with decimal.localcontext(DECIMAL_CONTEXT):
        parsed, type_ids, api_names, user_ids = _parse(records, results, refusals, now)
        if refusals or any(record.group is not None for record in records):
            return None
        if parsed:
            types_by_id, types_by_name, meters_by_pair = backend.resolve(
                type_ids, api_names, user_ids, apply_filtering_rules
            )
            bound = _bind_meter_types(
                parsed, types_by_id, types_by_name, apply_filtering_rules, results, refusals
            )
            if (
                refusals
                or any(fresh.meter_type.dimensions for fresh in bound)
                or any(
                    fresh.meter_type.auto_create_meters
                    and (fresh.meter_type.id, fresh.user_id) not in meters_by_pair
                    for fresh in bound
                )
            ):
                return None
            accepted = _bind_meters(backend, bound, types_by_id, meters_by_pair, refusals, now)
            if refusals or any(fresh.meter_has_thresholds for fresh in accepted):
                return None
            if accepted:
                fresh_keys = backend.append_and_count(accepted, source, source_ref, now)
                counted = _mark_duplicates(backend, accepted, fresh_keys, results, records)
                for record in counted:
                    results[record.index].counted = fresh_keys[record.key]
                return _result(results, changed=len({r.meter_id for r in counted if fresh_keys[r.key]}))
    return _result(results)  # type: ignore[arg-type]


@transaction.atomic
def _apply_batch(
    account_id: uuid.UUID,
    records: Sequence[UsageInput],
    source: str,
    source_ref: str,
    options: MeterOptions | None,
    apply_filtering_rules: bool,
    record_corrections: bool,
    now: datetime,
) -> UsageResult:
    backend: _Backend = (
        _PostgresBackend(account_id) if connection.vendor == "postgresql" else _PortableBackend(account_id)
    )
    results: list[RecordResult | None] = [None] * len(records)
    refusals: list[_Refusal] = []
    changed: list[_MeterState] = []
    crossings: list[_Crossing] = []
    with decimal.localcontext(DECIMAL_CONTEXT):
        parsed, type_ids, api_names, user_ids = _parse(records, results, refusals, now)
        if parsed:
            # 2. Meter types (with their filtering rules) and the customers' meters, in one read.
            types_by_id, types_by_name, meters_by_pair = backend.resolve(
                type_ids, api_names, user_ids, apply_filtering_rules
            )
            bound = _bind_meter_types(
                parsed, types_by_id, types_by_name, apply_filtering_rules, results, refusals
            )
            accepted = _bind_meters(backend, bound, types_by_id, meters_by_pair, refusals, now)
            if accepted:
                # 3. Dedup keys, ledger rows and hourly rollups: one statement.
                fresh_keys = backend.append(accepted, source, source_ref, now)
                counted = _mark_duplicates(backend, accepted, fresh_keys, results, records)
                if counted:
                    # 4. Lock the meters (id order), advance them in Python, write them at once.
                    meters = {
                        meter.id: meter
                        for meter in backend.lock_meters(sorted({r.meter_id for r in counted}))
                    }
                    changed, crossings = _advance_meters(meters, counted, options, results)
                    if changed:
                        backend.update_meters(changed, now)
                    if crossings:
                        _record_crossings(backend, crossings, meters, now)
    correction_ids = (
        backend.insert_corrections(refusals, source, source_ref, now)
        if refusals and record_corrections
        else {}
    )
    for refusal in refusals:
        results[refusal.index] = RecordResult(
            Outcome.CORRECTION,
            refusal.key,
            refusal.reason,
            refusal.message,
            correction_id=correction_ids.get(refusal.key),
        )
    return _result(results, len(changed), crossings)  # type: ignore[arg-type]


def _user_id(raw: Any) -> str:
    if raw is None:
        raise RecordRefused(Reason.MISSING_USER_ID, "The record has no userId.")
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise RecordRefused(Reason.INVALID_USER_ID, "userId must be a string.")
    text = raw if isinstance(raw, str) else str(raw)
    if not text.strip():
        raise RecordRefused(Reason.MISSING_USER_ID, "The record has no userId.")
    if len(text) > MAX_USER_ID_LENGTH:
        raise RecordRefused(Reason.INVALID_USER_ID, f"userId is longer than {MAX_USER_ID_LENGTH} characters.")
    if "\x00" in text:
        raise RecordRefused(Reason.INVALID_USER_ID, "userId must not contain NUL characters.")
    return text


def _type_reference(record: UsageInput) -> uuid.UUID | str:
    reference = record.meter_type_id
    if reference is not None and reference != "":
        if isinstance(reference, uuid.UUID):
            return reference
        try:
            return uuid.UUID(str(reference))
        except ValueError:
            raise RecordRefused(
                Reason.NO_MATCHING_METER, f"No meter type has the id {str(reference)[:40]!r}."
            )
    if record.meter_api_name:
        name = str(record.meter_api_name)
        if "\x00" in name:  # PostgreSQL cannot compare text holding NUL: no type has such a name
            raise RecordRefused(Reason.NO_MATCHING_METER, "The meter name must not contain NUL characters.")
        return name
    raise RecordRefused(Reason.NO_MATCHING_METER, "The record names no meter type.")


def _parse(records: Sequence[UsageInput], results: list, refusals: list[_Refusal], now: datetime):
    """Step 1, each record on its own: key, userId, value, time, dimensions, meter type reference."""
    latest = now + timedelta(seconds=settings.USAGE_CLOCK_SKEW_SECONDS)
    oldest = now - timedelta(days=settings.IDEMPOTENCY_WINDOW_DAYS)
    parsed: list[tuple[int, UsageInput, str, str, Decimal, datetime, uuid.UUID | str]] = []
    seen: set[str] = set()
    type_ids: set[uuid.UUID] = set()
    api_names: set[str] = set()
    user_ids: set[str] = set()
    for index, record in enumerate(records):
        key = (
            normalise_key(str(record.idempotency_key))
            if record.idempotency_key
            else f"gen:{uuid.uuid4().hex}"
        )
        try:
            user_id = _user_id(record.user_id)
            value = parse_value(record.value)
            moment = parse_timestamp(record.timestamp, now)
            if moment > latest:
                raise RecordRefused(
                    Reason.FUTURE_TIMESTAMP,
                    f"The timestamp is more than {settings.USAGE_CLOCK_SKEW_SECONDS} s in the future.",
                )
            if moment < oldest:
                raise RecordRefused(
                    Reason.TIMESTAMP_TOO_OLD,
                    f"The timestamp is older than the {settings.IDEMPOTENCY_WINDOW_DAYS}-day "
                    "idempotency window.",
                )
            dimensions = record.dimensions
            if dimensions is not None and (
                not isinstance(dimensions, dict) or "\\u0000" in _encode(dimensions)
            ):
                raise RecordRefused(
                    Reason.INVALID_DIMENSIONS, "dimensions must be an object without NUL characters."
                )
            reference = _type_reference(record)
        except RecordRefused as refused:
            refusals.append(
                _Refusal(
                    index,
                    key,
                    record.request_hash,
                    refused.reason,
                    refused.message,
                    _original(record),
                    record.node,
                    record.source_ref,
                )
            )
            continue
        if key in seen:
            # Twice in the batch: counted once, the later one is a duplicate.
            results[index] = RecordResult(Outcome.DUPLICATE, key)
            continue
        seen.add(key)
        if isinstance(reference, uuid.UUID):
            type_ids.add(reference)
        else:
            api_names.add(reference)
        user_ids.add(user_id)
        parsed.append((index, record, key, user_id, value, moment, reference))
    return parsed, type_ids, api_names, user_ids


def _original(record: UsageInput) -> Any:
    """The record as received (for data correction), or its fields when the caller gave none."""
    if record.record is not None:
        return record.record
    original = {
        "userId": record.user_id,
        "value": record.value,
        "timestamp": record.timestamp,
        "meterTypeId": record.meter_type_id,
        "meterApiName": record.meter_api_name,
        "meterKey": record.meter_key,
        "dimensions": record.dimensions,
        "group": record.group,
    }
    return json.loads(
        json.dumps({key: value for key, value in original.items() if value is not None}, default=str)
    )


def _bind_meter_types(
    parsed, types_by_id, types_by_name, apply_filtering_rules, results, refusals
) -> list[_Fresh]:
    """The meter type of each record exists, is active, and holds the record's time in its window."""
    bound: list[_Fresh] = []
    for index, record, key, user_id, value, moment, reference in parsed:
        meter_type = (
            types_by_id.get(reference) if isinstance(reference, uuid.UUID) else types_by_name.get(reference)
        )
        reason = message = None
        if meter_type is None:
            reason, message = Reason.NO_MATCHING_METER, f"No meter type {str(reference)!r} in the account."
        elif meter_type.status != ACTIVE:
            reason, message = (
                Reason.ARCHIVED_METER_TYPE,
                f"The meter type {meter_type.api_name!r} is archived.",
            )
        elif moment < meter_type.active_from or (
            meter_type.active_to is not None and moment >= meter_type.active_to
        ):
            reason, message = (
                Reason.OUTSIDE_ACTIVE_WINDOW,
                "The timestamp is outside the meter type's active window.",
            )
        if reason is not None:
            refusals.append(
                _Refusal(
                    index,
                    key,
                    record.request_hash,
                    reason,
                    message,
                    _original(record),
                    record.node,
                    record.source_ref,
                )
            )
            continue
        dimensions = record.dimensions or {}
        if apply_filtering_rules and meter_type.rules and not _lets_through(meter_type.rules, dimensions):
            results[index] = RecordResult(Outcome.EXCLUDED, key, message="Excluded by a filtering rule.")
            continue
        bound.append(_Fresh(index, record, key, meter_type, user_id, value, moment, dimensions))
    return bound


def _lets_through(rules: list, dimensions: dict) -> bool:
    for dimension_name, action, values in rules:
        held = dimensions.get(dimension_name)
        matches = held is not None and str(held) in values
        if matches != (action == INCLUDE):
            return False
    return True


def _bind_meters(
    backend: _Backend,
    bound: list[_Fresh],
    types_by_id: dict,
    meters_by_pair: dict,
    refusals: list[_Refusal],
    now: datetime,
) -> list[_Fresh]:
    """Give each record its meter, creating the missing meters of auto-create types first.
    Records without a meter go to data correction. Returns the records that have one."""
    by_pair = {
        (types_by_id[type_id], user_id): meters for (type_id, user_id), meters in meters_by_pair.items()
    }
    missing = {
        (record.meter_type, record.user_id)
        for record in bound
        if record.meter_type.auto_create_meters and (record.meter_type, record.user_id) not in by_pair
    }
    if missing:
        backend.insert_missing_meters(
            [(meter_type.id, user_id, meter_type) for meter_type, user_id in missing], now
        )
        found = backend.find_meters([(meter_type.id, user_id) for meter_type, user_id in missing])
        by_pair.update(
            {(types_by_id[type_id], user_id): meters for (type_id, user_id), meters in found.items()}
        )
    accepted = []
    for record in bound:
        candidates = by_pair.get((record.meter_type, record.user_id), ())
        meter_key = record.input.meter_key
        if meter_key:
            chosen = next((candidate for candidate in candidates if candidate[1] == meter_key), None)
        elif len(candidates) == 1:
            chosen = candidates[0]
        else:
            chosen = next((candidate for candidate in candidates if candidate[1] == DEFAULT_METER_KEY), None)
            if chosen is None and candidates:
                refusals.append(
                    _Refusal(
                        record.index,
                        record.key,
                        record.input.request_hash,
                        Reason.AMBIGUOUS_METER,
                        f"{len(candidates)} meters of {record.meter_type.api_name!r} belong to this userId; "
                        "give a meterKey.",
                        _original(record.input),
                        record.input.node,
                        record.input.source_ref,
                    )
                )
                continue
        if chosen is not None:
            record.meter_id, _, record.meter_has_thresholds = chosen
        if record.meter_id is None:
            refusals.append(
                _Refusal(
                    record.index,
                    record.key,
                    record.input.request_hash,
                    Reason.NO_MATCHING_METER,
                    f"No meter of {record.meter_type.api_name!r} for this userId"
                    + (f" and meterKey {meter_key!r}." if meter_key else "."),
                    _original(record.input),
                    record.input.node,
                    record.input.source_ref,
                )
            )
            continue
        accepted.append(record)
    return accepted


def _mark_duplicates(
    backend: _Backend,
    accepted: list[_Fresh],
    fresh_keys: Collection[str],
    results: list,
    records: Sequence[UsageInput],
) -> list[_Fresh]:
    """Results for the appended records; returns the fresh ones. A duplicate whose stored request
    hash differs is flagged ``key_reused`` (the same key sent with another body); so is a key
    repeated in the batch (a duplicate ``_parse`` marked) whose body differs from the one the key
    now holds, judged once the first is written, as if the two had come one after the other."""
    counted = []
    duplicates = [
        (index, result.idempotency_key, records[index].request_hash)
        for index, result in enumerate(results)
        if result is not None and result.outcome == Outcome.DUPLICATE and records[index].request_hash
    ]
    for record in accepted:
        if record.key in fresh_keys:
            results[record.index] = RecordResult(Outcome.ACCEPTED, record.key, meter_id=record.meter_id)
            counted.append(record)
        else:
            results[record.index] = RecordResult(Outcome.DUPLICATE, record.key, meter_id=record.meter_id)
            if record.input.request_hash:
                duplicates.append((record.index, record.key, record.input.request_hash))
    if duplicates:
        stored = backend.stored_hashes([key for _, key, _ in duplicates])
        for index, key, request_hash in duplicates:
            held = stored.get(key)
            results[index].key_reused = bool(held) and held != request_hash
    return counted


# --- meter state ------------------------------------------------------------------------------


def _advance_meters(
    meters: dict[uuid.UUID, _MeterState], counted: list[_Fresh], options: MeterOptions | None, results: list
) -> tuple[list[_MeterState], list[_Crossing]]:
    """Each meter's new state from the fresh records of its open period (read under its lock)."""
    by_meter: dict[uuid.UUID, list[_Fresh]] = {}
    for record in counted:
        meter = meters.get(record.meter_id)
        # A meter deleted meanwhile counts nothing; the record stays in the ledger.
        if meter is not None and meter.period_start <= record.timestamp < meter.period_end:
            by_meter.setdefault(meter.id, []).append(record)
            results[record.index].counted = True
    changed: list[_MeterState] = []
    crossings: list[_Crossing] = []
    for meter_id in sorted(by_meter):
        meter = meters[meter_id]
        fresh = by_meter[meter_id]
        meter_type = fresh[0].meter_type
        before = _decimal(meter.value)
        meter.value = _aggregate(meter_type.aggregation, before, fresh)
        _advance_groups(meter, meter_type, fresh)
        _advance_breakdowns(meter, meter_type, fresh, options)
        _advance_carry(meter, fresh, options)
        meter.record_count += len(fresh)
        changed.append(meter)
        crossings.extend(_crossed(meter, before))
    return changed, crossings


def _aggregate(aggregation: str, value: Decimal | None, records: list[_Fresh]) -> Decimal | None:
    if aggregation == SUM:
        return (value or Decimal(0)) + sum((record.value for record in records), Decimal(0))
    if aggregation == INCREMENT:
        return (value or Decimal(0)) + len(records)
    extreme = max if aggregation == MAX else min
    candidate = extreme(record.value for record in records)
    return candidate if value is None else extreme(value, candidate)


def _fields(record: _Fresh) -> dict:
    return record.input.fields if record.input.fields is not None else record.dimensions


def _advance_groups(meter: _MeterState, meter_type: _TypeInfo, fresh: list[_Fresh]) -> None:
    """``groups``: the meter's value per guiding rule / category the records matched."""
    by_group: dict[str, list[_Fresh]] = {}
    for record in fresh:
        if record.input.group is not None:
            by_group.setdefault(str(record.input.group), []).append(record)
    if not by_group:
        return
    groups = list(_json(meter.groups) or [])
    positions = {item.get("key"): position for position, item in enumerate(groups)}
    for key, records in by_group.items():
        position = positions.get(key)
        held = groups[position] if position is not None else {"key": key, "value": None, "recordCount": 0}
        value = _aggregate(meter_type.aggregation, _decimal(held.get("value")), records)
        updated = {
            "key": key,
            "value": _number(value),
            "recordCount": int(held.get("recordCount") or 0) + len(records),
        }
        if position is None:
            groups.append(updated)
        else:
            groups[position] = updated
    meter.groups = groups


def _advance_breakdowns(
    meter: _MeterState, meter_type: _TypeInfo, fresh: list[_Fresh], options: MeterOptions | None
) -> None:
    """``groupBreakdowns``: the meter's value per combination of the group-by fields' values."""
    group_by = (
        options.group_by if options is not None and options.group_by is not None else meter_type.dimensions
    )
    if not group_by:
        return
    by_values: dict[str, tuple[dict, list[_Fresh]]] = {}
    for record in fresh:
        fields = _fields(record)
        values = {name: fields.get(name) for name in group_by}
        by_values.setdefault(_encode(values), (values, []))[1].append(record)
    breakdowns = list(_json(meter.group_breakdowns) or [])
    positions = {
        _encode({name: (item.get("fields") or {}).get(name) for name in group_by}): position
        for position, item in enumerate(breakdowns)
    }
    for encoded, (values, records) in by_values.items():
        position = positions.get(encoded)
        held = (
            breakdowns[position]
            if position is not None
            else {"fields": values, "value": None, "recordCount": 0}
        )
        value = _aggregate(meter_type.aggregation, _decimal(held.get("value")), records)
        updated = {
            "fields": values,
            "value": _number(value),
            "recordCount": int(held.get("recordCount") or 0) + len(records),
        }
        if position is None:
            breakdowns.append(updated)
            positions[encoded] = len(breakdowns) - 1
        else:
            breakdowns[position] = updated
    meter.group_breakdowns = breakdowns


def _advance_carry(meter: _MeterState, fresh: list[_Fresh], options: MeterOptions | None) -> None:
    """carryFirst / carryLast: configured fields of the period's first and last record by time."""
    if options is None or not (options.carry_first or options.carry_last):
        return
    if options.carry_first:
        first = min(fresh, key=lambda record: record.timestamp)  # the first sent wins a tie
        held_at = (
            meter.carry_first_at
            if meter.carry_first_at and meter.carry_first_at >= meter.period_start
            else None
        )
        if held_at is None or first.timestamp < held_at:
            meter.carry_first = {name: _fields(first).get(name) for name in options.carry_first}
            meter.carry_first_at = first.timestamp
    if options.carry_last:
        last = max(reversed(fresh), key=lambda record: record.timestamp)  # the last sent wins a tie
        held_at = (
            meter.carry_last_at if meter.carry_last_at and meter.carry_last_at >= meter.period_start else None
        )
        if held_at is None or last.timestamp >= held_at:
            meter.carry_last = {name: _fields(last).get(name) for name in options.carry_last}
            meter.carry_last_at = last.timestamp


def threshold_limit(threshold: dict, capacity: Decimal | None) -> Decimal | None:
    """A threshold's absolute limit: its ``value``, or ``capacityPercentage`` of the capacity."""
    if "value" in threshold:
        return Decimal(str(threshold["value"]))
    if capacity is None or "capacityPercentage" not in threshold:
        return None
    return Decimal(capacity) * Decimal(str(threshold["capacityPercentage"])) / 100


def _crossed(meter: _MeterState, before: Decimal | None) -> list[_Crossing]:
    """Thresholds the update moved the value across, upward (reaching the limit counts)."""
    after = _decimal(meter.value)
    thresholds = _json(meter.thresholds)
    if after is None or not thresholds:
        return []
    crossings = []
    for position, threshold in enumerate(thresholds):
        limit = threshold_limit(threshold, _decimal(meter.capacity))
        if limit is not None and (before is None or before < limit) and after >= limit:
            crossings.append(
                _Crossing(meter.id, position, threshold.get("name") or "", limit, after, meter.period_start)
            )
    return crossings


def _record_crossings(backend: _Backend, crossings: list[_Crossing], meters: dict, now: datetime) -> None:
    """One threshold event per threshold and period; the notification goes with the new ones only."""
    from notifications.services import Notification, notification_publish_many

    for crossing in crossings:
        crossing.event_id = uuid.uuid4()
    inserted = backend.insert_threshold_events(crossings, now)
    notifications = []
    for crossing in crossings:
        if crossing.event_id not in inserted:
            crossing.event_id = None
            continue
        notifications.append(
            Notification(
                account_id=backend.account_id,
                event_type="threshold.crossed",
                payload=threshold_payload(meters[crossing.meter_id], crossing, now),
            )
        )
    if notifications:
        notification_publish_many(notifications=notifications)


def threshold_payload(meter: _MeterState, crossing: _Crossing, now: datetime) -> dict[str, Any]:
    """The ``threshold.crossed`` webhook's ``data``."""
    from config.api.serializers import format_timestamp

    threshold = dict((_json(meter.thresholds) or [])[crossing.threshold_index])
    return {
        "thresholdEventId": str(crossing.event_id),
        "meterId": str(meter.id),
        "meterTypeId": str(meter.meter_type_id),
        "meterKey": meter.meter_key,
        "userId": meter.user_id,
        "threshold": {"index": crossing.threshold_index, **threshold, "limit": _number(crossing.limit)},
        "value": _number(crossing.value),
        "capacity": _number(_decimal(meter.capacity)),
        "periodStart": format_timestamp(meter.period_start),
        "periodEnd": format_timestamp(meter.period_end),
        "crossedAt": format_timestamp(now),
    }


# --- backends -----------------------------------------------------------------------------------


class _Backend(ABC):
    """The SQL of each step. ``resolve`` and ``find_meters`` return meters as
    ``{(meter_type_id, user_id): [(meter_id, meter_key), …]}``."""

    account_id: uuid.UUID

    @abstractmethod
    def resolve(self, type_ids, api_names, user_ids, with_rules) -> tuple[dict, dict, dict]:
        """Implemented by each database's backend."""

    @abstractmethod
    def insert_missing_meters(self, missing, now) -> None:
        """Implemented by each database's backend."""

    @abstractmethod
    def find_meters(self, pairs) -> dict:
        """Implemented by each database's backend."""

    @abstractmethod
    def append(self, records, source, source_ref, now) -> set[str]:
        """Implemented by each database's backend."""

    @abstractmethod
    def stored_hashes(self, keys) -> dict[str, str]:
        """Implemented by each database's backend."""

    @abstractmethod
    def lock_meters(self, meter_ids) -> list[_MeterState]:
        """Implemented by each database's backend."""

    @abstractmethod
    def update_meters(self, meters, now) -> None:
        """Implemented by each database's backend."""

    @abstractmethod
    def insert_threshold_events(self, crossings, now) -> set[uuid.UUID]:
        """Implemented by each database's backend."""

    @abstractmethod
    def insert_corrections(self, refusals, source, source_ref, now) -> dict[str, uuid.UUID]:
        """Implemented by each database's backend."""


def _type_info(row: Sequence[Any], rules: Any) -> _TypeInfo:
    return _TypeInfo(
        id=row[0],
        api_name=row[1],
        aggregation=row[2],
        status=row[3],
        active_from=row[4],
        active_to=row[5],
        reset_cron=row[6],
        timezone=row[7],
        capacity=row[8],
        thresholds=_json(row[9]) or [],
        dimensions=_json(row[10]) or [],
        auto_create_meters=bool(row[11]),
        rules=[
            (name, action, [str(value) for value in (_json(values) or [])])
            for name, action, values in (_json(rules) or [])
        ],
    )


def _new_meter_rows(missing, now: datetime) -> list[tuple]:
    """Rows for meters created on first usage: the customer's meter covers the type's current
    period (from its last reset, or from activeFrom), so the usage that created it counts."""
    rows = []
    for type_id, user_id, meter_type in sorted(missing, key=lambda item: (item[0], item[1])):
        start, end = current_period(meter_type.reset_cron, meter_type.timezone, now)
        start = max(start, meter_type.active_from)
        if start >= end:
            continue
        empty = None if meter_type.aggregation in (MAX, MIN) else Decimal(0)
        rows.append(
            (
                uuid.uuid4(),
                type_id,
                user_id,
                meter_type.capacity,
                _encode(meter_type.thresholds),
                empty,
                start,
                end,
            )
        )
    return rows


def _group_meters(rows: Iterable[Sequence[Any]]) -> dict:
    """``(meter_id, meter_type_id, meter_key, user_id, has_thresholds)`` rows by (type, user)."""
    grouped: dict[tuple[uuid.UUID, str], list[tuple[uuid.UUID, str, bool]]] = {}
    for meter_id, type_id, meter_key, user_id, has_thresholds in rows:
        grouped.setdefault((type_id, user_id), []).append((meter_id, meter_key, bool(has_thresholds)))
    return grouped


_METER_COLUMNS = (
    "id, meter_type_id, meter_key, user_id, value, groups, group_breakdowns, carry_first, carry_last, "
    "carry_first_at, carry_last_at, record_count, period_start, period_end, capacity, thresholds"
)
_TYPE_COLUMNS = (
    "id, api_name, aggregation, status, active_from, active_to, reset_cron, timezone, capacity, "
    "thresholds, dimensions, auto_create_meters"
)


class _PostgresBackend(_Backend):
    """Arrays bound as parameters (server-side binding, binary where psycopg dumps it faster),
    each statement prepared once per connection: a fixed number of statements per batch."""

    RESOLVE = f"""
        WITH t AS MATERIALIZED (
            SELECT {_TYPE_COLUMNS}, {{rules}} AS rules FROM metering_metertype
            WHERE account_id = %(account)s AND (id = ANY(%(ids)b::uuid[]) OR api_name = ANY(%(names)b::text[]))
        )
        SELECT t.*, m.id, m.meter_type_id, m.meter_key, m.user_id, m.thresholds <> '[]'::jsonb FROM t
        LEFT JOIN metering_meter m ON m.account_id = %(account)s AND m.user_id = ANY(%(users)b::text[])
                                      AND m.meter_type_id = t.id
    """  # noqa: S608
    RULES = (
        "(SELECT json_agg(json_build_array(r.dimension_name, r.action, r.dimension_values) ORDER BY r.created_at) "
        "FROM metering_metereventfilteringrule r WHERE r.meter_type_id = metering_metertype.id)"
    )
    INSERT_METERS = """
        INSERT INTO metering_meter (id, account_id, meter_type_id, meter_key, user_id, custom_fields, capacity,
            thresholds, delete_on_reset, value, groups, group_breakdowns, carry_first, carry_last, record_count,
            period_start, period_end, created_at, updated_at)
        SELECT c.id, %(account)s, c.meter_type_id, %(meter_key)s, c.user_id, '{}', c.capacity, c.thresholds, false,
               c.value, '[]', '[]', '{}', '{}', 0, c.period_start, c.period_end, %(now)s, %(now)s
        FROM unnest(%(ids)b::uuid[], %(types)b::uuid[], %(users)b::text[], %(capacities)t::numeric[],
                    %(thresholds)b::jsonb[], %(values)t::numeric[], %(starts)b::timestamptz[], %(ends)b::timestamptz[])
             AS c(id, meter_type_id, user_id, capacity, thresholds, value, period_start, period_end)
        WHERE NOT EXISTS (SELECT 1 FROM metering_meter m WHERE m.account_id = %(account)s
                          AND m.user_id = c.user_id AND m.meter_type_id = c.meter_type_id)
        ORDER BY c.meter_type_id, c.user_id
        ON CONFLICT DO NOTHING
    """
    FIND_METERS = """
        SELECT id, meter_type_id, meter_key, user_id, thresholds <> '[]'::jsonb FROM metering_meter
        WHERE account_id = %s AND (meter_type_id, user_id) IN (SELECT * FROM unnest(%b::uuid[], %b::text[]))
    """
    # The batch's dedup keys, ledger rows and hourly rollups (locks in that order: key, rollup row).
    _APPEND_HEAD = """
        WITH batch AS (
            SELECT r->>0 AS key, r->>1 AS request_hash, (r->>2)::uuid AS meter_type_id, (r->>3)::uuid AS meter_id,
                   r->>4 AS user_id, (r->>5)::numeric AS value, (r->>6)::timestamptz AS ts, r->7 AS dimensions,
                   r->>8 AS source_ref, ord
            FROM jsonb_array_elements(%(batch)s::jsonb) WITH ORDINALITY AS b(r, ord)
        ), fresh AS (
            INSERT INTO metering_usagededupkey AS d (account_id, key, request_hash, created_at)
            SELECT DISTINCT ON (key) %(account)s, key, request_hash, %(now)s FROM batch ORDER BY key, ord
            ON CONFLICT DO NOTHING
            RETURNING d.key
        ), appended AS (
            INSERT INTO metering_usagerecord (account_id, meter_type_id, meter_id, user_id, value, "timestamp",
                                              dimensions, source, source_ref, idempotency_key, created_at)
            SELECT DISTINCT ON (b.key) %(account)s, b.meter_type_id, b.meter_id, b.user_id, b.value, b.ts,
                   b.dimensions, %(source)s, coalesce(b.source_ref, %(source_ref)s), b.key, %(now)s
            FROM batch b JOIN fresh f ON f.key = b.key ORDER BY b.key, b.ord
            RETURNING meter_type_id, meter_id, user_id, value, "timestamp", idempotency_key
        ), rolled AS (
            INSERT INTO metering_usagerollup AS r (account_id, meter_type_id, user_id, hour, sum, count, max, min)
            SELECT %(account)s, meter_type_id, user_id, date_trunc('hour', "timestamp", 'UTC'), sum(value), count(*),
                   max(value), min(value)
            FROM appended GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
            ON CONFLICT (account_id, meter_type_id, user_id, hour) DO UPDATE
            SET sum = r.sum + EXCLUDED.sum, count = r.count + EXCLUDED.count,
                max = GREATEST(r.max, EXCLUDED.max), min = LEAST(r.min, EXCLUDED.min)
            RETURNING 1
        )"""
    APPEND = (
        _APPEND_HEAD  # noqa: S608
        + """
        SELECT idempotency_key FROM appended
    """
    )
    # APPEND and the meters' update in one statement, for batches whose meters need nothing
    # computed in Python (no groups, breakdowns, carry or thresholds): the same writes as APPEND +
    # LOCK_METERS + UPDATE_METERS in the same lock order (keys, rollup rows, then the meters in id
    # order, once every rollup is written: ``count(*)`` reads all of ``rolled``). A meter counts the
    # records whose time is in the period its locked row holds. Answers each fresh key and whether
    # its meter counted it.
    APPEND_COUNT = (
        _APPEND_HEAD  # noqa: S608
        + """, locked AS MATERIALIZED (
            SELECT m.id, m.period_start, m.period_end FROM metering_meter m
            WHERE m.id = ANY(%(meters)s::uuid[]) AND m.id IN (SELECT meter_id FROM appended)
              AND (SELECT count(*) FROM rolled) >= 0
            ORDER BY m.id FOR UPDATE
        ), totals AS (
            SELECT a.meter_id, t.aggregation, sum(a.value) AS total, count(*) AS n, max(a.value) AS high,
                   min(a.value) AS low
            FROM appended a
            JOIN locked l ON l.id = a.meter_id AND a."timestamp" >= l.period_start AND a."timestamp" < l.period_end
            JOIN metering_metertype t ON t.id = a.meter_type_id
            GROUP BY a.meter_id, t.aggregation
        ), counted AS (
            UPDATE metering_meter AS m
            SET value = CASE u.aggregation WHEN 'SUM' THEN coalesce(m.value, 0) + u.total
                                           WHEN 'INCREMENT' THEN coalesce(m.value, 0) + u.n
                                           WHEN 'MAX' THEN GREATEST(m.value, u.high)
                                           ELSE LEAST(m.value, u.low) END,
                record_count = m.record_count + u.n, last_ingested_at = %(now)s, updated_at = %(now)s
            FROM totals u WHERE m.id = u.meter_id
            RETURNING 1
        )
        SELECT a.idempotency_key, l.id IS NOT NULL FROM appended a
        LEFT JOIN locked l ON l.id = a.meter_id AND a."timestamp" >= l.period_start AND a."timestamp" < l.period_end
    """
    )
    HASHES = (
        "SELECT key, request_hash FROM metering_usagededupkey WHERE account_id = %s AND key = ANY(%b::text[])"
    )
    LOCK_METERS = (
        f"SELECT {_METER_COLUMNS} FROM metering_meter WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"  # noqa: S608
    )
    UPDATE_METERS = """
        UPDATE metering_meter AS m
        SET value = u.value, groups = u.groups, group_breakdowns = u.group_breakdowns, carry_first = u.carry_first,
            carry_last = u.carry_last, carry_first_at = u.carry_first_at, carry_last_at = u.carry_last_at,
            record_count = u.record_count, last_ingested_at = %(now)s, updated_at = %(now)s
        FROM unnest(%(ids)b::uuid[], %(values)t::numeric[], %(groups)b::jsonb[], %(breakdowns)b::jsonb[],
                    %(carry_first)b::jsonb[], %(carry_last)b::jsonb[], %(carry_first_at)b::timestamptz[],
                    %(carry_last_at)b::timestamptz[], %(counts)b::bigint[])
             AS u(id, value, groups, group_breakdowns, carry_first, carry_last, carry_first_at, carry_last_at,
                  record_count)
        WHERE m.id = u.id
    """
    THRESHOLD_EVENTS = """
        INSERT INTO metering_thresholdevent (id, account_id, meter_id, threshold_index, name, threshold_value, value,
                                             period_start, crossed_at)
        SELECT e.id, %(account)s, e.meter_id, e.position, e.name, e.threshold_value, e.value, e.period_start, %(now)s
        FROM unnest(%(ids)b::uuid[], %(meters)b::uuid[], %(positions)b::int[], %(names)b::text[],
                    %(limits)t::numeric[], %(values)t::numeric[], %(starts)b::timestamptz[])
             AS e(id, meter_id, position, name, threshold_value, value, period_start)
        ORDER BY e.meter_id, e.position
        ON CONFLICT (meter_id, threshold_index, period_start) DO NOTHING
        RETURNING id
    """
    CORRECTIONS = """
        INSERT INTO metering_datacorrection (id, account_id, source, source_ref, node, reason, message, record,
            idempotency_key, request_hash, status, attempts, created_at, updated_at, resolved_at)
        SELECT c.id, %(account)s, %(source)s, coalesce(nullif(c.source_ref, ''), %(source_ref)s), c.node, c.reason,
               c.message, c.record, c.key, c.hash, 'OPEN', 1, %(now)s, %(now)s, NULL
        FROM unnest(%(ids)b::uuid[], %(nodes)b::text[], %(reasons)b::text[], %(messages)b::text[],
                    %(records)b::jsonb[], %(keys)b::text[], %(hashes)b::text[], %(refs)b::text[])
             AS c(id, node, reason, message, record, key, hash, source_ref)
        ORDER BY c.key
        ON CONFLICT (account_id, idempotency_key) WHERE status = 'OPEN' DO NOTHING
        RETURNING id, idempotency_key
    """
    OPEN_CORRECTIONS = (
        "SELECT id, idempotency_key FROM metering_datacorrection WHERE account_id = %s "
        "AND idempotency_key = ANY(%b::text[]) AND status = 'OPEN'"
    )

    def __init__(self, account_id: uuid.UUID):
        from psycopg import Cursor

        self.account_id = account_id
        connection.ensure_connection()
        self.cursor = Cursor(connection.connection)
        self.prepare = True if settings.USAGE_LEDGER_PREPARED_STATEMENTS else None

    def execute(self, sql: str, params: Any):
        """Through Django's execute wrappers and error mapping, with server-side binding."""
        connection.validate_no_broken_transaction()

        def run(sql, params, many, context):
            return self.cursor.execute(sql, params, prepare=self.prepare)

        executor = run
        for wrapper in reversed(connection.execute_wrappers):
            executor = partial(wrapper, executor)
        with connection.wrap_database_errors:
            executor(sql, params, False, {"connection": connection, "cursor": self})
        return self.cursor

    def resolve(self, type_ids, api_names, user_ids, with_rules):
        sql = self.RESOLVE.format(rules=self.RULES if with_rules else "NULL::json")
        rows = self.execute(
            sql,
            {
                "account": self.account_id,
                "ids": list(type_ids),
                "names": list(api_names),
                "users": list(user_ids),
            },
        ).fetchall()
        types: dict[uuid.UUID, _TypeInfo] = {}
        for row in rows:
            if row[0] not in types:
                types[row[0]] = _type_info(row[:12], row[12])
        return (
            types,
            {t.api_name: t for t in types.values()},
            _group_meters(row[13:] for row in rows if row[13]),
        )

    def insert_missing_meters(self, missing, now):
        rows = _new_meter_rows(missing, now)
        if not rows:
            return
        columns = [list(column) for column in zip(*rows, strict=True)]
        self.execute(
            self.INSERT_METERS,
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
            },
        )

    def find_meters(self, pairs):
        return _group_meters(
            self.execute(
                self.FIND_METERS, [self.account_id, [p[0] for p in pairs], [p[1] for p in pairs]]
            ).fetchall()
        )

    def append(self, records, source, source_ref, now):
        return {
            row[0]
            for row in self.execute(self.APPEND, self._batch(records, source, source_ref, now)).fetchall()
        }

    def append_and_count(
        self, records: list[_Fresh], source: str, source_ref: str, now: datetime
    ) -> dict[str, bool]:
        """``APPEND_COUNT``: the fresh keys, each with whether its meter counted the record."""
        parameters = {
            **self._batch(records, source, source_ref, now),
            "meters": list({r.meter_id for r in records}),
        }
        rows = self.execute(self.APPEND_COUNT, parameters).fetchall()
        return {key: counted for key, counted in rows}

    def _batch(self, records: list[_Fresh], source: str, source_ref: str, now: datetime) -> dict[str, Any]:
        # One JSON document (msgspec encodes it in C; jsonb is parsed once, then each field is a
        # cheap lookup): binding eight arrays element by element costs the client more.
        batch = _ENCODER.encode(
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
        ).decode()
        return {
            "account": self.account_id,
            "now": now,
            "source": source,
            "source_ref": source_ref or "",
            "batch": batch,
        }

    def stored_hashes(self, keys):
        return dict(self.execute(self.HASHES, [self.account_id, keys]).fetchall())

    def lock_meters(self, meter_ids):
        return [_MeterState(*row) for row in self.execute(self.LOCK_METERS, [meter_ids]).fetchall()]

    def update_meters(self, meters, now):
        self.execute(
            self.UPDATE_METERS,
            {
                "now": now,
                "ids": [m.id for m in meters],
                "values": [m.value for m in meters],
                "groups": [_json_text(m.groups) for m in meters],
                "breakdowns": [_json_text(m.group_breakdowns) for m in meters],
                "carry_first": [_json_text(m.carry_first) for m in meters],
                "carry_last": [_json_text(m.carry_last) for m in meters],
                "carry_first_at": [m.carry_first_at for m in meters],
                "carry_last_at": [m.carry_last_at for m in meters],
                "counts": [m.record_count for m in meters],
            },
        )

    def insert_threshold_events(self, crossings, now):
        rows = self.execute(
            self.THRESHOLD_EVENTS,
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

    def insert_corrections(self, refusals, source, source_ref, now):
        unique = list({refusal.key: refusal for refusal in reversed(refusals)}.values())
        rows = self.execute(
            self.CORRECTIONS,
            {
                "account": self.account_id,
                "source": source,
                "source_ref": source_ref or "",
                "now": now,
                "ids": [uuid.uuid4() for _ in unique],
                "nodes": [r.node or "" for r in unique],
                "reasons": [str(r.reason) for r in unique],
                "messages": [_storable_text(r.message[:500]) for r in unique],
                "records": [_storable_json(_encode(r.record)) for r in unique],
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
                        self.OPEN_CORRECTIONS, [self.account_id, waiting]
                    ).fetchall()
                }
            )
        return ids


class _PortableBackend(_Backend):
    """Any other database (SQLite, the embedded default): the same steps through the ORM and
    portable SQL. SQLite runs one writer at a time (transactions begin IMMEDIATE): nothing races."""

    def __init__(self, account_id: uuid.UUID):
        self.account_id = account_id
        self.ops = connection.ops

    def _uuid(self, value: uuid.UUID) -> Any:
        return value if connection.features.has_native_uuid_field else value.hex

    def _datetime(self, value: datetime) -> Any:
        return self.ops.adapt_datetimefield_value(value)

    def _decimal(self, value: Decimal | None) -> Any:
        return None if value is None else self.ops.adapt_decimalfield_value(value, 38, 12)

    def resolve(self, type_ids, api_names, user_ids, with_rules):
        from django.db.models import Q

        from metering.models import Meter, MeterEventFilteringRule

        rows = list(
            MeterType.objects.filter(account_id=self.account_id)
            .filter(Q(pk__in=type_ids) | Q(api_name__in=api_names))
            .values_list(*[column.strip() for column in _TYPE_COLUMNS.split(",")])
        )
        rules: dict[uuid.UUID, list] = {}
        if with_rules and rows:
            for rule in MeterEventFilteringRule.objects.filter(
                meter_type_id__in=[row[0] for row in rows]
            ).order_by("created_at"):
                rules.setdefault(rule.meter_type_id, []).append(
                    [rule.dimension_name, rule.action, rule.dimension_values]
                )
        types = {row[0]: _type_info(row, rules.get(row[0])) for row in rows}
        meters = (
            Meter.objects.filter(
                account_id=self.account_id, meter_type_id__in=list(types), user_id__in=list(user_ids)
            ).values_list("id", "meter_type_id", "meter_key", "user_id", "thresholds")
            if types
            else []
        )
        return types, {t.api_name: t for t in types.values()}, _group_meters(meters)

    def insert_missing_meters(self, missing, now):
        from metering.models import Meter

        Meter.objects.bulk_create(
            [
                Meter(
                    id=meter_id,
                    account_id=self.account_id,
                    meter_type_id=type_id,
                    meter_key=DEFAULT_METER_KEY,
                    user_id=user_id,
                    capacity=capacity,
                    thresholds=json.loads(thresholds),
                    value=value,
                    period_start=start,
                    period_end=end,
                    created_at=now,
                    updated_at=now,
                )
                for meter_id, type_id, user_id, capacity, thresholds, value, start, end in _new_meter_rows(
                    missing, now
                )
            ],
            ignore_conflicts=True,
        )

    def find_meters(self, pairs):
        from metering.models import Meter

        wanted = set(pairs)
        rows = Meter.objects.filter(
            account_id=self.account_id,
            meter_type_id__in={p[0] for p in pairs},
            user_id__in={p[1] for p in pairs},
        ).values_list("id", "meter_type_id", "meter_key", "user_id", "thresholds")
        return _group_meters(row for row in rows if (row[1], row[3]) in wanted)

    def append(self, records, source, source_ref, now):
        from metering.models import UsageRecord

        fresh: set[str] = set()
        ordered = sorted(records, key=lambda record: record.key)
        with connection.cursor() as cursor:
            for start in range(0, len(ordered), SQLITE_CHUNK):
                chunk = ordered[start : start + SQLITE_CHUNK]
                params: list[Any] = []
                for record in chunk:
                    params += [
                        self._uuid(self.account_id),
                        record.key,
                        record.input.request_hash,
                        self._datetime(now),
                    ]
                cursor.execute(
                    "INSERT INTO metering_usagededupkey (account_id, key, request_hash, created_at) "  # noqa: S608
                    f"VALUES {', '.join(['(%s, %s, %s, %s)'] * len(chunk))} ON CONFLICT DO NOTHING RETURNING key",
                    params,
                )
                fresh.update(row[0] for row in cursor.fetchall())
        appended = [record for record in records if record.key in fresh]
        UsageRecord.objects.bulk_create(
            [
                UsageRecord(
                    account_id=self.account_id,
                    meter_type_id=r.meter_type.id,
                    meter_id=r.meter_id,
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

    def _roll_up(self, appended: list[_Fresh]) -> None:
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
                "sum = metering_usagerollup.sum + excluded.sum, count = metering_usagerollup.count + excluded.count, "
                "max = MAX(metering_usagerollup.max, excluded.max), min = MIN(metering_usagerollup.min, excluded.min)",
                rows,
            )

    def stored_hashes(self, keys):
        from metering.models import UsageDedupKey

        return dict(
            UsageDedupKey.objects.filter(account_id=self.account_id, key__in=keys).values_list(
                "key", "request_hash"
            )
        )

    def lock_meters(self, meter_ids):
        from metering.models import Meter

        rows = (
            Meter.objects.filter(pk__in=meter_ids)
            .order_by("id")
            .values_list(*[column.strip() for column in _METER_COLUMNS.split(",")])
        )
        return [_MeterState(*row) for row in rows]

    def update_meters(self, meters, now):
        from metering.models import Meter

        Meter.objects.bulk_update(
            [
                Meter(
                    id=m.id,
                    value=m.value,
                    groups=_json(m.groups),
                    group_breakdowns=_json(m.group_breakdowns),
                    carry_first=_json(m.carry_first),
                    carry_last=_json(m.carry_last),
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

    def insert_threshold_events(self, crossings, now):
        inserted = set()
        with connection.cursor() as cursor:
            for crossing in sorted(crossings, key=lambda c: (c.meter_id, c.threshold_index)):
                cursor.execute(
                    "INSERT INTO metering_thresholdevent (id, account_id, meter_id, threshold_index, name, "
                    "threshold_value, value, period_start, crossed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (meter_id, threshold_index, period_start) DO NOTHING RETURNING id",
                    [
                        self._uuid(crossing.event_id),
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
                    inserted.add(crossing.event_id)
        return inserted

    def insert_corrections(self, refusals, source, source_ref, now):
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
                record=json.loads(_encode(r.record)),
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


# --- maintenance ----------------------------------------------------------------------------------


@transaction.atomic
def meters_recompute(*, meter_ids: Sequence[uuid.UUID]) -> int:
    """Set each meter's value and record count from the ledger's records of its current period.

    For the reset: records that arrive after ``periodEnd`` but before the meter is reset are in
    the ledger, counted by no meter. The reset moves the period, then calls this in its
    transaction, so they count into the new period. Idempotent (a recomputation, not an
    addition). ``groups``, ``groupBreakdowns`` and carry fields are left as they are: the meter
    processor's guiding rules and fields are not kept in the ledger. Returns the meters updated.
    """
    from django.db.models import Count, Max, Min, OuterRef, Subquery, Sum
    from django.db.models.functions import Coalesce

    from metering.models import Meter, UsageRecord

    records = (
        UsageRecord.objects.filter(
            account_id=OuterRef("account_id"),
            meter_type_id=OuterRef("meter_type_id"),
            user_id=OuterRef("user_id"),
            meter_id=OuterRef("pk"),
            timestamp__gte=OuterRef("period_start"),
            timestamp__lt=OuterRef("period_end"),
        )
        .order_by()
        .values("meter_id")
    )

    def total(aggregate):
        return Subquery(records.annotate(result=aggregate).values("result")[:1])

    meters = list(
        Meter.objects.select_for_update(of=("self",))
        .filter(pk__in=list(meter_ids))
        .order_by("pk")
        .select_related("meter_type")
        .annotate(
            ledger_count=Coalesce(total(Count("id")), 0),
            ledger_sum=total(Sum("value")),
            ledger_max=total(Max("value")),
            ledger_min=total(Min("value")),
        )
    )
    for meter in meters:
        aggregation = meter.meter_type.aggregation
        if aggregation == SUM:
            meter.value = meter.ledger_sum or Decimal(0)
        elif aggregation == INCREMENT:
            meter.value = Decimal(meter.ledger_count)
        else:
            meter.value = meter.ledger_max if aggregation == MAX else meter.ledger_min
        meter.record_count = meter.ledger_count
    Meter.objects.bulk_update(meters, ["value", "record_count"])
    return len(meters)


def usage_dedup_keys_purge(
    *, now: datetime | None = None, batch_size: int = 10_000, max_batches: int = 1_000
) -> int:
    """Delete idempotency keys older than the window (plus the clock skew and a day of margin).

    Safe: a record older than the window is refused (TIMESTAMP_TOO_OLD) before its key is looked
    up, so a purged key can never let a replay count twice. Bounded batches, each its own
    transaction. Returns the number of keys deleted.
    """
    from metering.models import UsageDedupKey

    now = now or utc_now()
    cutoff = now - timedelta(
        days=settings.IDEMPOTENCY_WINDOW_DAYS + 1, seconds=settings.USAGE_CLOCK_SKEW_SECONDS
    )
    deleted = 0
    for _ in range(max_batches):
        with transaction.atomic():
            keys = list(
                UsageDedupKey.objects.filter(created_at__lt=cutoff).values_list("account_id", "key")[
                    :batch_size
                ]
            )
            if not keys:
                break
            by_account: dict[uuid.UUID, list[str]] = {}
            for account_id, key in keys:
                by_account.setdefault(account_id, []).append(key)
            for account_id, account_keys in by_account.items():
                deleted += UsageDedupKey.objects.filter(account_id=account_id, key__in=account_keys).delete()[
                    0
                ]
    return deleted
