"""The ledger's upkeep: recomputing meters from the ledger (after a reset) and purging old keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils.timezone import now as utc_now

from metering import aggregation
from metering.models import Meter, UsageDedupKey, UsageRecord


@transaction.atomic
def meters_recompute(*, meter_ids: Sequence[uuid.UUID]) -> int:
    """Set each meter's value and record count from the ledger's records of its current period.

    For the reset: records that arrive after ``periodEnd`` but before the meter is reset are in
    the ledger, counted by no meter. The reset moves the period, then calls this in its
    transaction, so they count into the new period. Idempotent (a recomputation, not an
    addition). ``groups``, ``groupBreakdowns`` and carry fields are left as they are: the meter
    processor's guiding rules and fields are not kept in the ledger. Returns the meters updated.
    """
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

    def total(statistic: Any) -> Subquery:
        return Subquery(records.annotate(result=statistic).values("result")[:1])

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
        meter.value = aggregation.from_totals(
            meter.meter_type.aggregation,
            total=meter.ledger_sum,
            count=meter.ledger_count,
            highest=meter.ledger_max,
            lowest=meter.ledger_min,
        )
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


@dataclass(frozen=True, slots=True)
class HeldKey:
    """An idempotency key a data correction holds, as released for its reprocessing."""

    key: str
    request_hash: str
    created_at: datetime


def correction_keys_release(*, account_id: uuid.UUID, keys: Sequence[str]) -> list[HeldKey]:
    """Take the keys these data corrections hold out of the dedup table, in the caller's
    transaction, so that reprocessing counts each record under its own key; give them back with
    ``correction_keys_restore`` when the reprocessing is done. Only keys held by a correction are
    taken (never the key of a counted record), in one sorted statement."""
    held = UsageDedupKey.objects.filter(
        account_id=account_id, key__in=sorted(set(keys)), held_by_correction=True
    )
    released = [
        HeldKey(*row) for row in held.order_by("key").values_list("key", "request_hash", "created_at")
    ]
    if released:
        held.delete()
    return released


def correction_keys_restore(*, account_id: uuid.UUID, released: Sequence[HeldKey]) -> None:
    """Give the released keys back to the corrections still holding them: a key the reprocessing
    counted a record under is there already (and stays a counted record's key)."""
    UsageDedupKey.objects.bulk_create(
        [
            UsageDedupKey(
                account_id=account_id,
                key=held.key,
                request_hash=held.request_hash,
                created_at=held.created_at,
                held_by_correction=True,
            )
            for held in sorted(released, key=lambda held: held.key)
        ],
        ignore_conflicts=True,
    )
