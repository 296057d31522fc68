"""Step 1 of ``usage_apply``, each record on its own: its key, userId, value, time, dimensions and
meter type reference. A record that fails becomes a ``Refusal`` (data correction), never an error."""

from __future__ import annotations

import decimal
import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from django.conf import settings

from metering.ledger.encoding import SORTED_ENCODER, encode
from metering.ledger.records import (
    DECIMAL_CONTEXT,
    MAX_KEY_LENGTH,
    MAX_USER_ID_LENGTH,
    QUANTUM,
    VALUE_LIMIT,
    Outcome,
    ParsedRecord,
    RecordResult,
    Refusal,
    Results,
    UsageInput,
)
from metering.models import DataCorrection

Reason = DataCorrection.Reason


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
    exponent = number.as_tuple().exponent  # an int: the number is finite
    if isinstance(exponent, int) and exponent < -12:
        number = number.quantize(QUANTUM, context=DECIMAL_CONTEXT)
    return number


def _is_missing(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def parse_timestamp(raw: Any, now: datetime) -> datetime:
    """An aware datetime, ISO 8601 text (UTC unless it carries an offset), or Unix milliseconds;
    empty means now."""
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
            # The seeds' times are UTC: a time without an offset is read as UTC.
            moment = moment.replace(tzinfo=UTC)
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


def request_hash(body: Any) -> str:
    """A stable hash of a request body, to tell a replay from a reused idempotency key."""
    return hashlib.sha256(SORTED_ENCODER.encode(body)).hexdigest()


def parse_user_id(raw: Any) -> str:
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


def parse_type_reference(record: UsageInput) -> uuid.UUID | str:
    if record.refusal:
        raise RecordRefused(Reason.NO_MATCHING_METER, record.refusal)
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


class ParsedBatch(NamedTuple):
    records: list[ParsedRecord]
    type_ids: set[uuid.UUID]
    api_names: set[str]
    user_ids: set[str]


def acceptance_days() -> int:
    """How many days back a record may lie: the acceptance window, never past the idempotency
    window (a record older than its key's memory could count twice)."""
    return min(settings.USAGE_ACCEPTANCE_DAYS, settings.IDEMPOTENCY_WINDOW_DAYS)


def parse_batch(
    records: Sequence[UsageInput], results: Results, refusals: list[Refusal], now: datetime
) -> ParsedBatch:
    """Step 1, each record on its own: key, userId, value, time, dimensions, meter type reference.
    A key repeated in the batch is a duplicate of its first record (``results``)."""
    latest = now + timedelta(seconds=settings.USAGE_CLOCK_SKEW_SECONDS)
    accepted_days = acceptance_days()
    oldest = now - timedelta(days=accepted_days)
    parsed: list[ParsedRecord] = []
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
            user_id = parse_user_id(record.user_id)
            # No value at all is an occurrence: an INCREMENT meter counts it, any other type refuses it
            # once its meter type is known (binding.bind_meter_types).
            value = None if _is_missing(record.value) else parse_value(record.value)
            moment = parse_timestamp(record.timestamp, now)
            if moment > latest:
                raise RecordRefused(
                    Reason.FUTURE_TIMESTAMP,
                    f"The timestamp is more than {settings.USAGE_CLOCK_SKEW_SECONDS} s in the future.",
                )
            if moment < oldest:
                raise RecordRefused(
                    Reason.TIMESTAMP_TOO_OLD,
                    f"The timestamp is older than the {accepted_days}-day acceptance window "
                    "(USAGE_ACCEPTANCE_DAYS).",
                )
            dimensions = record.dimensions
            if dimensions is not None and (
                not isinstance(dimensions, dict) or "\\u0000" in encode(dimensions)
            ):
                raise RecordRefused(
                    Reason.INVALID_DIMENSIONS, "dimensions must be an object without NUL characters."
                )
            reference = parse_type_reference(record)
        except RecordRefused as refused:
            refusals.append(refusal_of(index, key, record, refused.reason, refused.message))
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
        parsed.append(ParsedRecord(index, record, key, user_id, value, moment, reference))
    return ParsedBatch(parsed, type_ids, api_names, user_ids)


def original_record(record: UsageInput) -> Any:
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


def refusal_of(index: int, key: str, record: UsageInput, reason: str, message: str) -> Refusal:
    """The record bound for data correction with ``reason``."""
    return Refusal(
        index,
        key,
        record.request_hash,
        reason,
        message,
        original_record(record),
        record.node,
        record.source_ref,
    )
