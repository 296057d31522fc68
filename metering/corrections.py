"""Data correction: the usage records the ledger refused, kept with their reason until fixed.

A refused record is never dropped: ``usage_apply`` stores it as an OPEN ``DataCorrection`` with
its reason and the record as it came in. An operator (admin or API) edits the record and
reprocesses it, which sends it through ``usage_apply`` again with its original idempotency key,
so however often a record is reprocessed (or replayed by its sender meanwhile) it is counted
once. A record that is still refused stays OPEN with its new reason; one that is counted (or was
counted meanwhile) becomes REPROCESSED; one the meter type's filtering rules exclude, or that an
operator gives up on, becomes DISCARDED.

A source that registered a router (``correction_router_register``: the stream engine for
``stream``) reads its corrections itself: the router may count one record into several meters,
with keys derived from the correction's, and with its own meter options (group-by and carry
fields); the correction is REPROCESSED once every one of them is counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string
from django.utils.timezone import now as utc_now

from config.api.errors import Conflict, NotFound, ValidationFailed
from metering.ledger import (
    MeterOptions,
    Outcome,
    UsageInput,
    correction_keys_release,
    correction_keys_restore,
    usage_apply,
)
from metering.models import DataCorrection, UsageSource

MAX_BULK = 1000


class DataCorrectionNotFound(NotFound):
    code = "DATA_CORRECTION_NOT_FOUND"
    message = "Data correction not found."


class DataCorrectionNotOpen(Conflict):
    code = "DATA_CORRECTION_NOT_OPEN"
    message = "Only an OPEN data correction can be changed."


def usage_input_from_record(record: dict[str, Any]) -> UsageInput:
    """The ledger's own record shape (service callers and streams): userId, value, timestamp,
    meterTypeId or meterApiName, meterKey, dimensions, group."""
    return UsageInput(
        user_id=record.get("userId"),
        value=record.get("value"),
        timestamp=record.get("timestamp"),
        meter_type_id=record.get("meterTypeId"),
        meter_api_name=record.get("meterApiName"),
        meter_key=record.get("meterKey"),
        dimensions=record.get("dimensions"),
        group=record.get("group"),
    )


# How a stored record of each source is read again. Loaded lazily: the adapters live with their APIs.
RECORD_READERS: dict[str, str] = {
    UsageSource.INGEST_API: "metering.compat.amberflo.usage_input_from_event",
    UsageSource.REPORT_API: "metering.compat.billing.usage_input_from_report",
}


@dataclass(frozen=True)
class CorrectionRoute:
    """What a source's router makes of a correction: the ledger records to apply — one per meter
    the record counts into (each with its own idempotency key) — and the meter options they are
    applied with; or, with no ``inputs``, why the record still cannot be counted."""

    inputs: Sequence[UsageInput] = ()
    options: MeterOptions | None = None
    reason: str = ""
    message: str = ""


# Sources whose records are read again from the whole correction (its node and source_ref), e.g.
# "stream": the stream engine sends the record through its meter node again. Registered by the
# app that owns the source (streams registers in its AppConfig.ready(): metering never imports
# streams).
CORRECTION_ROUTERS: dict[str, Callable[[DataCorrection], CorrectionRoute]] = {}


def correction_router_register(source: str, router: Callable[[DataCorrection], CorrectionRoute]) -> None:
    """Read the corrections of ``source`` with ``router(correction)`` when they are reprocessed."""
    if source not in UsageSource.values:
        raise ValueError(f"Unknown usage source {source!r}.")
    CORRECTION_ROUTERS[source] = router


def _reader(source: str) -> Callable[[dict[str, Any]], UsageInput]:
    path = RECORD_READERS.get(source)
    return import_string(path) if path else usage_input_from_record


@dataclass(frozen=True)
class ReprocessResult:
    reprocessed: int
    still_open: int
    discarded: int
    corrections: list[DataCorrection]


def _locked(account_id: uuid.UUID, correction_ids: Sequence[uuid.UUID | str]) -> list[DataCorrection]:
    """The account's corrections, locked in id order (so concurrent operators never deadlock).
    Any unknown id (or another account's) is a 404 and nothing changes."""
    ids: set[uuid.UUID] = set()
    for raw in correction_ids:
        try:
            ids.add(raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw)))
        except ValueError:
            raise DataCorrectionNotFound(
                details=[{"field": "ids", "message": f"Unknown id {str(raw)[:40]!r}."}]
            )
    if len(ids) > MAX_BULK:
        raise ValidationFailed.for_field("ids", f"At most {MAX_BULK} ids at once.")
    corrections = list(
        DataCorrection.objects.select_for_update().filter(account_id=account_id, pk__in=ids).order_by("id")
    )
    if len(corrections) != len(ids):
        unknown = sorted(str(i) for i in ids - {c.pk for c in corrections})
        raise DataCorrectionNotFound(
            details=[{"field": "ids", "message": f"Unknown id {i}."} for i in unknown]
        )
    return corrections


@transaction.atomic
def data_correction_update(*, correction: DataCorrection, record: Any) -> DataCorrection:
    """Replace the stored record (the fix), before reprocessing it. Only an OPEN correction."""
    if not isinstance(record, dict):
        raise ValidationFailed.for_field("record", "The record must be a JSON object.")
    locked = _locked(correction.account_id, [correction.pk])[0]
    if locked.status != DataCorrection.Status.OPEN:
        raise DataCorrectionNotOpen()
    locked.record = record
    locked.updated_at = utc_now()
    locked.save(update_fields=["record", "updated_at"])
    return locked


@transaction.atomic
def data_corrections_reprocess(
    *, account_id: uuid.UUID, correction_ids: Sequence[uuid.UUID | str]
) -> ReprocessResult:
    """Send the OPEN corrections' records through the ledger again (corrections not OPEN are left
    as they are). One ``usage_apply`` per source, then one update of the corrections."""
    corrections = _locked(account_id, correction_ids)
    now = utc_now()
    open_ones = [c for c in corrections if c.status == DataCorrection.Status.OPEN]
    by_source: dict[tuple[str, str], list[DataCorrection]] = {}
    for correction in open_ones:
        by_source.setdefault((correction.source, correction.source_ref), []).append(correction)
    # Each correction holds its record's idempotency key (a replay meanwhile was a duplicate):
    # released for the reprocessing, which counts the record under it, and given back after to
    # the corrections that stay open or are discarded.
    released = correction_keys_release(account_id=account_id, keys=[c.idempotency_key for c in open_ones])
    holders = {c.idempotency_key: c.pk for c in open_ones}
    for (source, source_ref), group in by_source.items():
        # One usage_apply per set of meter options (a stream's corrections come from its nodes).
        applied: dict[MeterOptions | None, list[tuple[DataCorrection, list[UsageInput]]]] = {}
        for correction in group:
            if not isinstance(correction.record, dict):
                _still_open(
                    correction, DataCorrection.Reason.INVALID_RECORD, "The record is not a JSON object.", now
                )
                continue
            router = CORRECTION_ROUTERS.get(source)
            route = (
                router(correction)
                if router is not None
                else CorrectionRoute(inputs=[_reader(source)(correction.record)])
            )
            if not route.inputs:
                _still_open(
                    correction, route.reason or DataCorrection.Reason.NO_MATCHING_METER, route.message, now
                )
                continue
            inputs = list(route.inputs)
            for usage in inputs:
                if router is None:
                    usage.idempotency_key = correction.idempotency_key
            # A key released for another correction stays that record's: a record routed to it only
            # now (a stream record that reached no meter type, sharing its idempotencyKey with a
            # record of another customer refused after routing) is its duplicate, as if the key
            # were held, not a record to count while the other stays refused.
            inputs = [
                usage
                for usage in inputs
                if holders.get(usage.idempotency_key, correction.pk) == correction.pk
            ]
            if not inputs:
                _resolve(
                    correction,
                    DataCorrection.Status.REPROCESSED,
                    "A duplicate: another correction holds its idempotency key.",
                    now,
                )
                continue
            for usage in inputs:
                usage.request_hash = correction.request_hash
                usage.node = correction.node
                usage.record = correction.record
            applied.setdefault(route.options, []).append((correction, inputs))
        for options, routed in applied.items():
            result = usage_apply(
                account_id=account_id,
                records=[usage for _, inputs in routed for usage in inputs],
                source=source,
                source_ref=source_ref,
                options=options,
                apply_filtering_rules=source == UsageSource.INGEST_API,
                record_corrections=False,
                now=now,
            )
            outcomes = iter(result.results)
            for correction, inputs in routed:
                _settle(correction, [next(outcomes) for _ in inputs], now)
    correction_keys_restore(account_id=account_id, released=released)
    DataCorrection.objects.bulk_update(
        open_ones, ["status", "reason", "message", "attempts", "updated_at", "resolved_at"]
    )
    return ReprocessResult(
        reprocessed=sum(c.status == DataCorrection.Status.REPROCESSED for c in open_ones),
        still_open=sum(c.status == DataCorrection.Status.OPEN for c in open_ones),
        discarded=sum(c.status == DataCorrection.Status.DISCARDED for c in open_ones),
        corrections=corrections,
    )


def _settle(correction: DataCorrection, outcomes: list, now) -> None:
    """A correction's new state from the outcomes of its ledger records: counted when each was
    counted (now or before), discarded when a filtering rule excludes it, else still open with
    the first refusal (the records that were counted stay counted: their keys make a later
    reprocessing count them once)."""
    refused = next((outcome for outcome in outcomes if outcome.outcome == Outcome.CORRECTION), None)
    if refused is not None:
        _still_open(correction, refused.reason, refused.message, now)
    elif any(outcome.outcome == Outcome.EXCLUDED for outcome in outcomes):
        _resolve(correction, DataCorrection.Status.DISCARDED, "Excluded by a filtering rule.", now)
    else:
        counted = any(outcome.outcome == Outcome.ACCEPTED for outcome in outcomes)
        _resolve(
            correction, DataCorrection.Status.REPROCESSED, "Counted." if counted else "Already counted.", now
        )


def _resolve(correction: DataCorrection, status: str, message: str, now) -> None:
    correction.status = status
    correction.message = message
    correction.updated_at = now
    correction.resolved_at = now


def _still_open(correction: DataCorrection, reason: str, message: str, now) -> None:
    correction.reason = reason
    correction.message = message[:500]
    correction.attempts += 1
    correction.updated_at = now


@transaction.atomic
def data_correction_reprocess(*, correction: DataCorrection) -> DataCorrection:
    """Reprocess one correction (409 unless it is OPEN). Returns it with its new status."""
    locked = _locked(correction.account_id, [correction.pk])[0]
    if locked.status != DataCorrection.Status.OPEN:
        raise DataCorrectionNotOpen()
    return data_corrections_reprocess(account_id=locked.account_id, correction_ids=[locked.pk]).corrections[0]


@transaction.atomic
def data_corrections_discard(*, account_id: uuid.UUID, correction_ids: Sequence[uuid.UUID | str]) -> int:
    """Give up on OPEN corrections (kept, marked DISCARDED). Returns how many were discarded."""
    now = utc_now()
    open_ones = [c for c in _locked(account_id, correction_ids) if c.status == DataCorrection.Status.OPEN]
    for correction in open_ones:
        _resolve(correction, DataCorrection.Status.DISCARDED, "Discarded by an operator.", now)
    DataCorrection.objects.bulk_update(open_ones, ["status", "message", "updated_at", "resolved_at"])
    return len(open_ones)
