"""The billing platform's report usage (seed 004); its subscription lookups and the catalogue they
read are the billing app's.

A billing "meter" is a meter type: ``meterId`` is its id, ``meterName`` its apiName (or, failing
that, its name). Reported usage goes into the same ledger as everything else, keyed by the
request's idempotency key; the request hash stored with the key tells a replay (200 duplicate)
from the same key sent with another body (409 IDEMPOTENCY_KEY_REUSED).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from django.db.models import Case, Q, Value, When
from django.utils.timezone import now as utc_now

from config.api.errors import IdempotencyKeyReused, ValidationFailed
from config.ttlcache import TtlCache
from metering.compat.decoding import decode, decode_amount
from metering.compat.exceptions import (
    MeterArchived,
    MeterIdentifierRequired,
)
from metering.exceptions import MeterNotFound
from metering.ledger import (
    MAX_KEY_LENGTH,
    Outcome,
    RecordRefused,
    RecordResult,
    UsageInput,
    normalise_key,
    parse_timestamp,
    request_hash,
    usage_apply,
)
from metering.models import MeterType, UsageDedupKey, UsageSource

KEY_PREFIX = "report:"
MetadataValue = str | int | float | bool


MAX_NAME_LENGTH = 100  # meterName
MAX_METADATA = 50
MAX_TIMESTAMP_LENGTH = 64


class UsageReport(msgspec.Struct):
    """Seed 004's report-usage body. A field left out is None; an explicit null is refused, as the
    schema says (msgspec checks a sent value against the annotation, never the default). The value
    arrives as ``msgspec.Raw`` so that a string is refused (``decode_amount``)."""

    value: msgspec.Raw
    customerId: Annotated[str, msgspec.Meta(min_length=1, max_length=320)]  # noqa: N815 - the API's names
    meterId: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = None  # type: ignore[assignment]  # noqa: N815
    meterName: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)] = None  # type: ignore[assignment]  # noqa: N815
    timestamp: Annotated[str, msgspec.Meta(max_length=MAX_TIMESTAMP_LENGTH)] = None  # type: ignore[assignment]
    # Its names are not bounded here: OpenAPI 3.0 cannot say a bound on keys (the body limit bounds them).
    metadata: Annotated[dict[str, MetadataValue], msgspec.Meta(max_length=MAX_METADATA)] = None  # type: ignore[assignment]


_DECODER = msgspec.json.Decoder(UsageReport)
_RAW_DECODER = msgspec.json.Decoder()


def meter_for_report(*, account_id: uuid.UUID, meter_id: str | None, meter_name: str | None) -> MeterType:
    """The meter type a report (or a lookup) names: 400 when it names none, 404 when unknown."""
    if not meter_id and not meter_name:
        raise MeterIdentifierRequired(
            details=[
                {"field": "meterId", "message": MeterIdentifierRequired.message},
                {"field": "meterName", "message": MeterIdentifierRequired.message},
            ]
        )
    types = MeterType.objects.filter(account_id=account_id)
    found = None
    if meter_id:
        try:
            found = types.filter(pk=uuid.UUID(meter_id)).first()
        except ValueError:
            found = None
    else:
        # One query; the apiName wins over another type's display name (which may repeat: then an
        # active type over an archived one, the oldest first). A deleted definition is not named.
        found = (
            types.filter(Q(api_name=meter_name) | Q(name=meter_name), definition_deleted_at__isnull=True)
            .order_by(
                Case(When(api_name=meter_name, then=Value(0)), default=Value(1)), "status", "created_at", "pk"
            )
            .first()
        )
    if found is None:
        raise MeterNotFound(
            details=[{"field": "meterId" if meter_id else "meterName", "message": MeterNotFound.message}]
        )
    return found


# Report usage looks its meter up on every call; found meters are kept this long per process.
# Safe: the ledger checks the type again in the transaction (an archived type's usage goes to data
# correction), so a stale entry can only change which answer a just-archived meter gets.
METER_CACHE_SECONDS = 5.0
_meter_cache: TtlCache[MeterType] = TtlCache(ttl=lambda: METER_CACHE_SECONDS)


def _meter_for_report_cached(
    account_id: uuid.UUID, meter_id: str | None, meter_name: str | None
) -> MeterType:
    cached = cached_meter_for_report(account_id, meter_id, meter_name)
    if cached is not None:
        return cached
    meter_type = meter_for_report(account_id=account_id, meter_id=meter_id, meter_name=meter_name)
    _meter_cache.put((account_id, meter_id, meter_name), meter_type)
    return meter_type


def cached_meter_for_report(
    account_id: uuid.UUID, meter_id: str | None, meter_name: str | None
) -> MeterType | None:
    """The meter type a report names if this process found it in the last METER_CACHE_SECONDS
    (refreshed in the background near the end of that time, so a meter in use stays cached)."""
    return _meter_cache.get(
        (account_id, meter_id, meter_name),
        refresh=lambda: meter_for_report(account_id=account_id, meter_id=meter_id, meter_name=meter_name),
    )


@dataclass(frozen=True)
class ReportAnswer:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class PreparedReport:
    """A checked report, as the ledger record to apply (its ``source_ref`` is the requestId)."""

    record: UsageInput
    idempotency_key: str


def usage_report(*, account_id: uuid.UUID, idempotency_key: str, body: bytes) -> ReportAnswer:
    """Report one usage event: 202 queued, 200 duplicate on a replay, 409 for a reused key."""
    prepared = report_prepare(account_id=account_id, idempotency_key=idempotency_key, body=body)
    assert prepared is not None  # the default lookup finds the meter or raises
    outcome = usage_apply(
        account_id=account_id, records=[prepared.record], source=UsageSource.REPORT_API
    ).results[0]
    return report_answer(prepared, outcome)


def usage_key_known(account_id: uuid.UUID, key: str) -> bool:
    """Whether the ledger holds this (namespaced) idempotency key: a record was counted or sent
    to data correction under it."""
    return UsageDedupKey.objects.filter(account_id=account_id, key=key).exists()


def report_prepare(
    *,
    account_id: uuid.UUID,
    idempotency_key: str,
    body: bytes,
    find_meter: Callable[[uuid.UUID, str | None, str | None], Any] = _meter_for_report_cached,
    key_known: Callable[..., bool] | None = usage_key_known,
) -> PreparedReport | None:
    """The report checked (400 for a bad body, 404 for an unknown meter, 400 for an archived one).
    ``find_meter(account_id, meter_id, meter_name)`` may answer None (the ASGI fast path finds
    only cached meters), and so does this then. A replay comes before the archived check: a key
    the ledger holds goes to the ledger, which answers it duplicate (200) or reused (409) as the
    first call's outcome stands; ``key_known=None`` (the fast path, which does not read the
    database on its event loop) answers None for an archived meter, handing it to the view."""
    if len(idempotency_key) > MAX_KEY_LENGTH:
        raise ValidationFailed.for_field("Idempotency-Key", f"At most {MAX_KEY_LENGTH} characters.")
    report: UsageReport = decode(_DECODER, body)
    value = decode_amount(report.value, "value")
    meter_type = find_meter(account_id, report.meterId, report.meterName)
    if meter_type is None:
        return None
    key = normalise_key(KEY_PREFIX + idempotency_key)
    if meter_type.status != MeterType.Status.ACTIVE:
        if key_known is None:
            return None
        if key_known(account_id, key):
            return _prepared(meter_type, report, value, key, body, idempotency_key)
        raise MeterArchived(
            details=[
                {"field": "meterId" if report.meterId else "meterName", "message": MeterArchived.message}
            ]
        )
    if report.timestamp is not None:
        try:
            parse_timestamp(report.timestamp, utc_now())
        except RecordRefused as refused:
            raise ValidationFailed.for_field("timestamp", refused.message)
    return _prepared(meter_type, report, value, key, body, idempotency_key)


def _prepared(
    meter_type: MeterType, report: UsageReport, value: Any, key: str, body: bytes, idempotency_key: str
) -> PreparedReport:
    # The body as sent (decoded), so a replay without a timestamp hashes the same as its original.
    raw = _RAW_DECODER.decode(body)
    return PreparedReport(
        UsageInput(
            user_id=report.customerId,
            value=value,
            timestamp=report.timestamp,
            meter_type_id=meter_type.pk,
            dimensions=report.metadata,
            idempotency_key=key,
            request_hash=request_hash(raw),
            record=raw,
            source_ref=str(uuid.uuid4()),
        ),
        idempotency_key,
    )


def report_answer(prepared: PreparedReport, outcome: RecordResult) -> ReportAnswer:
    """What the ledger's outcome for a report answers: 200 duplicate, 409 reused key, else 202
    (counted, or sent to data correction: the key holds that outcome, so every replay after it,
    of either, is a duplicate)."""
    if outcome.outcome == Outcome.DUPLICATE:
        if outcome.key_reused:
            raise IdempotencyKeyReused(
                details=[{"field": "Idempotency-Key", "message": IdempotencyKeyReused.message}]
            )
        return ReportAnswer(200, {"status": "duplicate", "idempotencyKey": prepared.idempotency_key})
    # Counted, or kept in data correction with its reason (found by requestId as sourceRef).
    return ReportAnswer(202, {"status": "queued", "requestId": prepared.record.source_ref})


def usage_input_from_report(record: dict[str, Any]) -> UsageInput:
    """A stored report body (data correction) as a ledger record; the meter is looked up again."""
    meter_id, meter_name = record.get("meterId"), record.get("meterName")
    return UsageInput(
        user_id=record.get("customerId"),
        value=record.get("value"),
        timestamp=record.get("timestamp"),
        meter_type_id=meter_id or None,
        meter_api_name=None if meter_id else meter_name,
        dimensions=record.get("metadata"),
    )
