"""The Amberflo-compatible metering API (seed 002) over meter types and the usage ledger.

A meter definition is a meter type seen through another lens: ``meterApiName`` is the type's
``api_name``, ``displayName`` its name; ``SUM_OF_ALL_USAGE`` is a SUM type, ``MAX_IN_PERIOD`` a MAX
type and ``UNIQUE_CUSTOMERS_COUNT`` an INCREMENT type flagged to count distinct customers in
usage queries. Types made through ``/meter-definition`` create a customer's meter on its first
usage. Events from ``/ingest`` go through the filtering rules, then ``usage_apply``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any

import msgspec
from django.conf import settings
from django.db import transaction

from config.api.errors import ValidationFailed
from metering import services
from metering.compat.decoding import decode, decode_amount
from metering.compat.exceptions import MeterDefinitionNotFound
from metering.exceptions import AggregationImmutable
from metering.ledger import Outcome, UsageInput, UsageResult, normalise_key, request_hash, usage_apply
from metering.models import MeterEventFilteringRule, MeterType, UsageSource

# --- meter definitions --------------------------------------------------------------------------

SUM_OF_ALL_USAGE = "SUM_OF_ALL_USAGE"
MAX_IN_PERIOD = "MAX_IN_PERIOD"
UNIQUE_CUSTOMERS_COUNT = "UNIQUE_CUSTOMERS_COUNT"
# Types made through the Usage Engine API have aggregations Amberflo does not name; shown as these.
COUNT_OF_EVENTS = "COUNT_OF_EVENTS"
MIN_IN_PERIOD = "MIN_IN_PERIOD"
DEFINITION_TYPES = [SUM_OF_ALL_USAGE, MAX_IN_PERIOD, UNIQUE_CUSTOMERS_COUNT]
SHOWN_TYPES = [*DEFINITION_TYPES, COUNT_OF_EVENTS, MIN_IN_PERIOD]
_AGGREGATION = {SUM_OF_ALL_USAGE: "SUM", MAX_IN_PERIOD: "MAX", UNIQUE_CUSTOMERS_COUNT: "INCREMENT"}
# Defaults of a type made through /meter-definition: monthly periods in UTC.
DEFINITION_UNIT = "units"
DEFINITION_RESET_CRON = "0 0 1 * *"
DEFINITION_TIMEZONE = "Etc/UTC"
# A definition's activeFrom: before any record the ledger could accept.
DEFINITION_ACTIVE_FROM = datetime(1970, 1, 1, tzinfo=UTC)


def definition_type(meter_type: MeterType) -> str:
    if meter_type.counts_unique_customers:
        return UNIQUE_CUSTOMERS_COUNT
    return {
        "SUM": SUM_OF_ALL_USAGE,
        "MAX": MAX_IN_PERIOD,
        "INCREMENT": COUNT_OF_EVENTS,
        "MIN": MIN_IN_PERIOD,
    }[meter_type.aggregation]


def meter_definition(meter_type: MeterType) -> dict[str, Any]:
    """A meter type as seed 002's MeterDefinition."""
    return {
        "meterApiName": meter_type.api_name,
        "displayName": meter_type.name,
        "label": meter_type.api_name,
        "type": definition_type(meter_type),
        "meterTimeInMillis": int(meter_type.created_at.timestamp() * 1000),
        "dimensions": list(meter_type.dimensions or []),
    }


def meter_definition_get(*, account_id: uuid.UUID, meter_api_name: str) -> MeterType:
    meter_type = MeterType.objects.filter(
        account_id=account_id, api_name=meter_api_name, definition_deleted_at__isnull=True
    ).first()
    if meter_type is None:
        raise MeterDefinitionNotFound(
            details=[{"field": "meterApiName", "message": MeterDefinitionNotFound.message}]
        )
    return meter_type


def _check_type(kind: str) -> None:
    if kind not in DEFINITION_TYPES:
        raise ValidationFailed.for_field("type", f"type must be one of: {', '.join(DEFINITION_TYPES)}.")


@transaction.atomic
def meter_definition_create(
    *,
    account_id: uuid.UUID,
    meter_api_name: str,
    display_name: str,
    kind: str,
    dimensions: list[str] | None = None,
) -> MeterType:
    """A meter type with monthly UTC periods whose customers' meters are created on first usage."""
    _check_type(kind)
    meter_type = services.meter_type_create(
        account_id=account_id,
        name=display_name,
        api_name=meter_api_name,
        unit=DEFINITION_UNIT,
        aggregation=_AGGREGATION[kind],
        reset_cron=DEFINITION_RESET_CRON,
        timezone=DEFINITION_TIMEZONE,
        dimensions=list(dimensions or []),
        auto_create_meters=True,
        counts_unique_customers=kind == UNIQUE_CUSTOMERS_COUNT,
    )
    # Amberflo has no active window: a definition counts events of any time the ledger accepts.
    meter_type.active_from = DEFINITION_ACTIVE_FROM
    meter_type.save(update_fields=["active_from"])
    return meter_type


@transaction.atomic
def meter_definition_update(
    *,
    account_id: uuid.UUID,
    meter_api_name: str,
    display_name: str | None = None,
    kind: str | None = None,
    dimensions: list[str] | None = None,
) -> MeterType:
    """Rename a definition or change its dimensions. Its type (aggregation) cannot change."""
    meter_type = meter_definition_get(account_id=account_id, meter_api_name=meter_api_name)
    if kind is not None and kind != definition_type(meter_type):
        raise AggregationImmutable(
            "The type of a meter definition cannot be changed.",
            details=[{"field": "type", "message": "The type of a meter definition cannot be changed."}],
        )
    data: dict[str, Any] = {}
    if display_name is not None:
        data["name"] = display_name
    if dimensions is not None:
        data["dimensions"] = list(dimensions)
    return services.meter_type_update(meter_type=meter_type, data=data) if data else meter_type


@transaction.atomic
def meter_definition_delete(*, account_id: uuid.UUID, meter_api_name: str) -> int:
    """Delete the definition: its meter type, or, once usage made meters, archive the type and
    release its meterApiName (``services.meter_type_retire``); the ledger keeps its usage."""
    return services.meter_type_retire(
        meter_type=meter_definition_get(account_id=account_id, meter_api_name=meter_api_name)
    )


def meter_definitions(account_id: uuid.UUID) -> list[MeterType]:
    """The account's definitions: every meter type but those deleted through /meter-definition."""
    return list(
        MeterType.objects.filter(account_id=account_id, definition_deleted_at__isnull=True).order_by(
            "created_at", "pk"
        )
    )


# --- filtering rules ----------------------------------------------------------------------------


def filtering_rule(rule: MeterEventFilteringRule) -> dict[str, Any]:
    """A rule as seed 002's FilteringRule."""
    return {
        "meterApiName": rule.meter_type.api_name,
        "ruleId": str(rule.pk),
        "dimensionName": rule.dimension_name,
        "dimensionValues": list(rule.dimension_values),
        "action": rule.action,
    }


def filtering_rule_save(
    *,
    account_id: uuid.UUID,
    meter_api_name: str,
    dimension_name: str,
    dimension_values: list[str],
    action: str,
    rule_id: str | None = None,
) -> MeterEventFilteringRule:
    """Create or update the filtering rule of the meter definition ``meter_api_name`` (404 when
    there is none): ``services.filtering_rule_save``."""
    meter_type = meter_definition_get(account_id=account_id, meter_api_name=meter_api_name)
    return services.filtering_rule_save(
        account_id=account_id,
        meter_type=meter_type,
        dimension_name=dimension_name,
        dimension_values=dimension_values,
        action=action,
        rule_id=rule_id,
    )


filtering_rule_delete = services.filtering_rule_delete


# --- ingestion ----------------------------------------------------------------------------------

ApiName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
CustomerId = Annotated[str, msgspec.Meta(min_length=1, max_length=320)]
UniqueId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
DimensionValue = Annotated[str, msgspec.Meta(max_length=1000)]
MAX_DIMENSIONS = 50  # per event
MAX_VALUES = 100  # meters per event
# Up to year 9999 in Unix milliseconds.
Millis = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799_999)]


class MeterEvent(msgspec.Struct):
    """Seed 002's MeterEvent: one event for one meter, or for several through ``values``.

    A field left out is None; an explicit null is refused, as the schema says (msgspec checks a sent
    value against the annotation, never against the default). Amounts arrive as ``msgspec.Raw``
    (so that a string is refused, not read as a number) and ``decode_events`` puts their Decimal
    in their place.
    """

    customerId: CustomerId  # noqa: N815 - the API's field names
    meterTimeInMillis: Millis  # noqa: N815
    meterApiName: ApiName = None  # type: ignore[assignment]  # noqa: N815
    meterValue: msgspec.Raw = None  # type: ignore[assignment]  # noqa: N815 - a Decimal after decode_events
    uniqueId: UniqueId = None  # type: ignore[assignment]  # noqa: N815
    # Names (keys) are not bounded here: OpenAPI 3.0 cannot say a bound on keys, and the body limit
    # bounds them. An unknown meter name in values goes to data correction.
    dimensions: Annotated[dict[str, DimensionValue], msgspec.Meta(max_length=MAX_DIMENSIONS)] = None  # type: ignore[assignment]
    values: Annotated[dict[str, msgspec.Raw], msgspec.Meta(max_length=MAX_VALUES)] = None  # type: ignore[assignment]


@lru_cache(maxsize=4)
def _decoder(max_events: int) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(MeterEvent | Annotated[list[MeterEvent], msgspec.Meta(max_length=max_events)])


def decode_events(body: bytes) -> list[MeterEvent]:
    """One event or an array of them; 400 with the field for anything seed 002 does not allow."""
    decoded = decode(_decoder(settings.INGEST_MAX_EVENTS), body)
    events = decoded if isinstance(decoded, list) else [decoded]
    for position, event in enumerate(events):
        prefix = f"[{position}]." if isinstance(decoded, list) else ""
        if event.values is None and (event.meterApiName is None or event.meterValue is None):
            field = "meterApiName" if event.meterApiName is None else "meterValue"
            raise ValidationFailed.for_field(f"{prefix}{field}", f"{field} is required (or give values).")
        if (event.meterApiName is None) != (event.meterValue is None):
            raise ValidationFailed.for_field(
                f"{prefix}meterValue", "meterApiName and meterValue go together."
            )
        if event.meterValue is not None:
            event.meterValue = decode_amount(event.meterValue, f"{prefix}meterValue")
        if event.values is not None:
            event.values = {
                name: decode_amount(value, f"{prefix}values.{name}") for name, value in event.values.items()
            }
    return events


def _event_record(event: MeterEvent, meter_api_name: str, value: Decimal) -> dict[str, Any]:
    record: dict[str, Any] = {
        "meterApiName": meter_api_name,
        "customerId": event.customerId,
        "meterValue": value,
        "meterTimeInMillis": event.meterTimeInMillis,
    }
    if event.uniqueId is not None:
        record["uniqueId"] = event.uniqueId
    if event.dimensions:
        record["dimensions"] = event.dimensions
    return record


def usage_input_from_event(record: dict[str, Any]) -> UsageInput:
    """One meter's share of an event (as data correction stores it) as a ledger record."""
    unique_id = record.get("uniqueId")
    name = record.get("meterApiName")
    return UsageInput(
        user_id=record.get("customerId"),
        value=record.get("meterValue"),
        timestamp=record.get("meterTimeInMillis"),
        meter_api_name=name,
        dimensions=record.get("dimensions"),
        idempotency_key=normalise_key(f"ingest:{name}:{unique_id}") if unique_id else None,
        record=record,
    )


_OK = msgspec.json.encode("OK")


@dataclass(frozen=True)
class IngestAnswer:
    """What happened to each (event, meter) of an /ingest request."""

    result: UsageResult
    items: list[tuple[int, str, str | None]]  # (event index, meterApiName, uniqueId)

    def headers(self) -> dict[str, str]:
        result = self.result
        return {
            "X-Ingest-Accepted": str(result.accepted),
            "X-Ingest-Duplicates": str(result.duplicates),
            "X-Ingest-Excluded": str(result.excluded),
            "X-Ingest-Corrections": str(result.corrections),
            "X-Ingest-Key-Reused": str(sum(outcome.key_reused for outcome in result.results)),
        }

    def reply(self, prefer: str) -> tuple[bytes, dict[str, str]]:
        """The JSON answer (``"OK"``, or the summary for ``Prefer: return=representation``) and headers."""
        if "return=representation" in prefer:
            return msgspec.json.encode(self.summary()), {
                **self.headers(),
                "Preference-Applied": "return=representation",
            }
        return _OK, self.headers()

    def summary(self) -> dict[str, Any]:
        listed: dict[str, list[dict[str, Any]]] = {"duplicates": [], "excluded": [], "corrections": []}
        for (index, name, unique_id), outcome in zip(self.items, self.result.results, strict=True):
            item: dict[str, Any] = {"index": index, "meterApiName": name, "uniqueId": unique_id}
            if outcome.outcome == Outcome.DUPLICATE:
                listed["duplicates"].append({**item, "keyReused": outcome.key_reused})
            elif outcome.outcome == Outcome.EXCLUDED:
                listed["excluded"].append(item)
            elif outcome.outcome == Outcome.CORRECTION:
                listed["corrections"].append(
                    {
                        **item,
                        "reason": str(outcome.reason),
                        "message": outcome.message,
                        "correctionId": str(outcome.correction_id) if outcome.correction_id else None,
                    }
                )
        return {"status": "OK", "accepted": self.result.accepted, **listed}


def events_ingest(*, account_id: uuid.UUID, events: list[MeterEvent]) -> IngestAnswer:
    """Each event's meters, through the filtering rules and the ledger (uniqueId deduplicates per meter)."""
    records, items = ingest_records(events)
    result = usage_apply(
        account_id=account_id, records=records, source=UsageSource.INGEST_API, apply_filtering_rules=True
    )
    return IngestAnswer(result=result, items=items)


def ingest_records(events: list[MeterEvent]) -> tuple[list[UsageInput], list[tuple[int, str, str | None]]]:
    """The ledger records of decoded events (one per event and meter), and what each one was."""
    records: list[UsageInput] = []
    items: list[tuple[int, str, str | None]] = []
    for index, event in enumerate(events):
        # Decimals by now (``decode_events``), though declared Raw for the decoder.
        pairs: list[tuple[str, Any]] = (
            [(event.meterApiName, event.meterValue)] if event.meterApiName is not None else []
        )
        pairs.extend((event.values or {}).items())
        for name, value in pairs:
            record = _event_record(event, name, value)
            keyed = event.uniqueId is not None
            records.append(
                UsageInput(
                    user_id=event.customerId,
                    value=value,
                    timestamp=event.meterTimeInMillis,
                    meter_api_name=name,
                    dimensions=event.dimensions,
                    idempotency_key=f"ingest:{name}:{event.uniqueId}" if keyed else None,
                    # What the uniqueId stands for: a replay of another event is told apart.
                    request_hash=request_hash(record) if keyed else "",
                    record=record,
                )
            )
            items.append((index, name, event.uniqueId))
    return records, items
