"""Step 2 of ``usage_apply``: each parsed record gets its meter type and its meter (creating the
missing meters of auto-create types); then, once appended, its outcome (fresh or duplicate)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from metering.aggregation import INCREMENT
from metering.ledger.parsing import Reason, refusal_of
from metering.ledger.records import (
    ACTIVE,
    DEFAULT_METER_KEY,
    INCLUDE,
    FilteringRule,
    FreshRecord,
    MeterChoice,
    MetersByPair,
    MissingMeter,
    Outcome,
    ParsedRecord,
    RecordResult,
    Refusal,
    Results,
    TypeInfo,
    UsageInput,
)

if TYPE_CHECKING:
    from metering.ledger.store import Store

# What a record without a value stands for in the ledger of an INCREMENT meter type.
ONE_OCCURRENCE = Decimal(1)


def bind_meter_types(
    parsed: list[ParsedRecord],
    types_by_id: dict[uuid.UUID, TypeInfo],
    types_by_name: dict[str, TypeInfo],
    apply_filtering_rules: bool,
    results: Results,
    refusals: list[Refusal],
) -> list[FreshRecord]:
    """The meter type of each record exists, is active, and holds the record's time in its window."""
    bound: list[FreshRecord] = []
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
        elif value is None and meter_type.aggregation != INCREMENT:
            reason, message = Reason.MISSING_VALUE, "The record has no value."
        if reason is not None or meter_type is None:
            refusals.append(refusal_of(index, key, record, reason or "", message or ""))
            continue
        if value is None:
            value = ONE_OCCURRENCE  # seed 000: INCREMENT counts occurrences, a value is not needed
        dimensions = record.dimensions or {}
        if apply_filtering_rules and meter_type.rules and not lets_through(meter_type.rules, dimensions):
            results[index] = RecordResult(Outcome.EXCLUDED, key, message="Excluded by a filtering rule.")
            continue
        bound.append(FreshRecord(index, record, key, meter_type, user_id, value, moment, dimensions))
    return bound


def lets_through(rules: list[FilteringRule], dimensions: dict[str, Any]) -> bool:
    """Whether a record with ``dimensions`` passes every filtering rule of its meter type."""
    for dimension_name, action, values in rules:
        held = dimensions.get(dimension_name)
        matches = held is not None and str(held) in values
        if matches != (action == INCLUDE):
            return False
    return True


def bind_meters(
    store: Store,
    bound: list[FreshRecord],
    types_by_id: dict[uuid.UUID, TypeInfo],
    meters_by_pair: MetersByPair,
    refusals: list[Refusal],
    now: datetime,
) -> list[FreshRecord]:
    """Give each record its meter, creating the missing meters of auto-create types first.
    Records without a meter go to data correction. Returns the records that have one."""
    by_pair: dict[tuple[TypeInfo, str], list[MeterChoice]] = {
        (types_by_id[type_id], user_id): meters for (type_id, user_id), meters in meters_by_pair.items()
    }
    missing = {
        MissingMeter(record.meter_type, record.user_id)
        for record in bound
        if record.meter_type.auto_create_meters and (record.meter_type, record.user_id) not in by_pair
    }
    if missing:
        store.insert_missing_meters(missing, now)
        found = store.find_meters([(meter_type.id, user_id) for meter_type, user_id in missing])
        by_pair.update(
            {(types_by_id[type_id], user_id): meters for (type_id, user_id), meters in found.items()}
        )
    accepted = []
    for record in bound:
        candidates = by_pair.get((record.meter_type, record.user_id), ())
        meter_key = record.input.meter_key
        if meter_key:
            chosen = next((candidate for candidate in candidates if candidate.meter_key == meter_key), None)
        elif len(candidates) == 1:
            chosen = candidates[0]
        else:
            chosen = next(
                (candidate for candidate in candidates if candidate.meter_key == DEFAULT_METER_KEY), None
            )
            if chosen is None and candidates:
                refusals.append(
                    refusal_of(
                        record.index,
                        record.key,
                        record.input,
                        Reason.AMBIGUOUS_METER,
                        f"{len(candidates)} meters of {record.meter_type.api_name!r} belong to this userId; "
                        "give a meterKey.",
                    )
                )
                continue
        if chosen is not None:
            record.meter_id, record.meter_has_thresholds = chosen.meter_id, chosen.has_thresholds
        if record.meter_id is None:
            refusals.append(
                refusal_of(
                    record.index,
                    record.key,
                    record.input,
                    Reason.NO_MATCHING_METER,
                    f"No meter of {record.meter_type.api_name!r} for this userId"
                    + (f" and meterKey {meter_key!r}." if meter_key else "."),
                )
            )
            continue
        accepted.append(record)
    return accepted


def settle_repeated_keys(
    accepted: list[FreshRecord], refusals: list[Refusal], results: Results
) -> tuple[list[FreshRecord], list[Refusal]]:
    """A key the batch holds twice belongs to its first record, counted or refused: every later
    record with it is a duplicate (as if they had come one after the other), judged against the
    body the key holds once the first is written. Returns the accepted records and refusals that
    own their key."""
    owners: set[str] = set()
    kept: list[FreshRecord] = []
    refused: list[Refusal] = []
    for _, item in sorted(
        [(record.index, record) for record in accepted] + [(refusal.index, refusal) for refusal in refusals],
        key=lambda pair: pair[0],
    ):
        if item.key in owners:
            results[item.index] = RecordResult(Outcome.DUPLICATE, item.key)
            continue
        owners.add(item.key)
        if isinstance(item, Refusal):
            refused.append(item)
        else:
            kept.append(item)
    return kept, refused


def mark_duplicates(
    store: Store,
    accepted: list[FreshRecord],
    fresh_keys: Collection[str],
    results: Results,
    records: Sequence[UsageInput],
    refused: Sequence[Refusal] = (),
) -> list[FreshRecord]:
    """Results for the appended records; returns the fresh ones. A refused record whose key
    (``refused``, recorded with the batch) was not new is a duplicate too. A duplicate whose stored request
    hash differs is flagged ``key_reused`` (the same key sent with another body); so is a key
    repeated in the batch (a duplicate ``parse_batch`` marked) whose body differs from the one the
    key now holds, judged once the first is written, as if the two had come one after the other."""
    counted = []
    for refusal in refused:
        if refusal.key not in fresh_keys:  # replayed: the key answers with its first outcome
            results[refusal.index] = RecordResult(Outcome.DUPLICATE, refusal.key)
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
        stored = store.stored_hashes([key for _, key, _ in duplicates])
        for index, key, request_hash in duplicates:
            held = stored.get(key)
            result = results[index]
            if result is not None:
                result.key_reused = bool(held) and held != request_hash
    return counted
