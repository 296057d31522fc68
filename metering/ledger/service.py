"""``usage_apply``: the orchestration of the ledger's steps (the package docstring says why and in
which order locks are taken). Each step lives in its own module: parsing, binding, state,
thresholds; the SQL of each step in the store of the database."""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from django.db import connection, transaction
from django.utils.timezone import now as utc_now

from config.metrics import USAGE_RECORDS
from metering.ledger.binding import bind_meter_types, bind_meters, mark_duplicates, settle_repeated_keys
from metering.ledger.parsing import parse_batch
from metering.ledger.portable import PortableStore
from metering.ledger.postgres import PostgresStore
from metering.ledger.records import (
    DECIMAL_CONTEXT,
    Crossing,
    FreshRecord,
    MeterOptions,
    MeterState,
    Outcome,
    RecordResult,
    Refusal,
    Results,
    ThresholdCrossing,
    UsageInput,
    UsageResult,
)
from metering.ledger.state import advance_meters
from metering.ledger.store import Store
from metering.ledger.thresholds import record_crossings
from metering.models import UsageSource


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
    """Validate, deduplicate, append and count a batch of usage records (see the package docstring).

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
    results: Sequence[RecordResult | None], changed: int = 0, crossings: Sequence[Crossing] = ()
) -> UsageResult:
    answered = cast(list[RecordResult], results)  # every record has its outcome by now
    result = UsageResult(results=answered)
    for item in answered:
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


def _store(account_id: uuid.UUID) -> Store:
    return PostgresStore(account_id) if connection.vendor == "postgresql" else PortableStore(account_id)


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
    store = PostgresStore(account_id)
    results: Results = [None] * len(records)
    refusals: list[Refusal] = []
    with decimal.localcontext(DECIMAL_CONTEXT):
        parsed = parse_batch(records, results, refusals, now)
        if refusals or any(record.group is not None for record in records):
            return None
        if parsed.records:
            types_by_id, types_by_name, meters_by_pair = store.resolve(
                parsed.type_ids, parsed.api_names, parsed.user_ids, apply_filtering_rules
            )
            bound = bind_meter_types(
                parsed.records, types_by_id, types_by_name, apply_filtering_rules, results, refusals
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
            accepted = bind_meters(store, bound, types_by_id, meters_by_pair, refusals, now)
            if refusals or any(fresh.meter_has_thresholds for fresh in accepted):
                return None
            if accepted:
                fresh_keys = store.append_and_count(accepted, source, source_ref, now)
                counted = mark_duplicates(store, accepted, fresh_keys, results, records)
                for record in counted:
                    result = results[record.index]
                    if result is not None:
                        result.counted = fresh_keys[record.key]
                return _result(results, changed=len({r.meter_id for r in counted if fresh_keys[r.key]}))
    return _result(results)


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
    store = _store(account_id)
    results: Results = [None] * len(records)
    refusals: list[Refusal] = []
    changed: list[MeterState] = []
    crossings: list[Crossing] = []
    with decimal.localcontext(DECIMAL_CONTEXT):
        # 1. Each record on its own.
        parsed = parse_batch(records, results, refusals, now)
        accepted: list[FreshRecord] = []
        if parsed.records:
            # 2. Meter types (with their filtering rules) and the customers' meters, in one read.
            types_by_id, types_by_name, meters_by_pair = store.resolve(
                parsed.type_ids, parsed.api_names, parsed.user_ids, apply_filtering_rules
            )
            bound = bind_meter_types(
                parsed.records, types_by_id, types_by_name, apply_filtering_rules, results, refusals
            )
            accepted = bind_meters(store, bound, types_by_id, meters_by_pair, refusals, now)
        accepted, refusals = settle_repeated_keys(accepted, refusals, results)
        # A refused record's key is recorded too (a replay answers duplicate, whatever it says
        # now); data-correction reprocessing (``record_corrections=False``) records none: the
        # correction keeps holding its own key (``correction_keys_release``).
        claimed = refusals if record_corrections else []
        if accepted or claimed:
            # 3. Dedup keys, ledger rows and hourly rollups: one statement.
            fresh_keys = store.append(
                accepted, source, source_ref, now, [(r.key, r.request_hash) for r in claimed]
            )
            counted = mark_duplicates(store, accepted, fresh_keys, results, records, claimed)
            refusals = [r for r in refusals if not claimed or r.key in fresh_keys]
            if counted:
                changed, crossings = _count(store, counted, options, results, now)
    # 5. The refused records, to data correction.
    _refuse(store, refusals, results, source, source_ref, now, record_corrections)
    return _result(results, len(changed), crossings)


def _count(
    store: Store,
    counted: list[FreshRecord],
    options: MeterOptions | None,
    results: Results,
    now: datetime,
) -> tuple[list[MeterState], list[Crossing]]:
    """4. Lock the meters (id order), advance them in Python, write them at once; then the
    thresholds they crossed."""
    meter_ids = sorted({r.meter_id for r in counted if r.meter_id is not None})
    meters = {meter.id: meter for meter in store.lock_meters(meter_ids)}
    changed, crossings = advance_meters(meters, counted, options, results)
    if changed:
        store.update_meters(changed, now)
    if crossings:
        record_crossings(store, crossings, meters, now)
    return changed, crossings


def _refuse(
    store: Store,
    refusals: list[Refusal],
    results: Results,
    source: str,
    source_ref: str,
    now: datetime,
    record_corrections: bool,
) -> None:
    correction_ids = (
        store.insert_corrections(refusals, source, source_ref, now) if refusals and record_corrections else {}
    )
    for refusal in refusals:
        results[refusal.index] = RecordResult(
            Outcome.CORRECTION,
            refusal.key,
            refusal.reason,
            refusal.message,
            correction_id=correction_ids.get(refusal.key),
        )
