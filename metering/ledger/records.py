"""What goes through the ledger: the records callers hand over, the answers they get, and the
ledger's own working records between steps (``usage_apply`` in ``service.py`` lists the steps)."""

from __future__ import annotations

import decimal
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

# numeric(38, 12): values must stay below 10^26 in magnitude; twelve decimal places are kept.
VALUE_LIMIT = Decimal(10) ** 26
QUANTUM = Decimal("1E-12")
# Enough digits that sums of numeric(38, 12) values are exact.
DECIMAL_CONTEXT = decimal.Context(prec=80)
MAX_KEY_LENGTH = 255
MAX_USER_ID_LENGTH = 320
DEFAULT_METER_KEY = "default"
SQLITE_CHUNK = 200

# Plain strings: comparing with the TextChoices members costs an enum lookup per record.
ACTIVE = "ACTIVE"
INCLUDE = "INCLUDE"


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
    ``refusal``: why the caller could not route the record to a meter type (a stream's meter
    processor): once the record is otherwise valid, it goes to data correction as
    NO_MATCHING_METER with this message.
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
    refusal: str = ""


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


# --- the ledger's working records -------------------------------------------------------------

# Filled in as the batch goes: ``None`` until a step decides the record's outcome.
Results = list[RecordResult | None]


class FilteringRule(NamedTuple):
    dimension_name: str
    action: str
    values: list[str]


@dataclass(slots=True, eq=False)  # hashed by identity: cheap dictionary keys per record
class TypeInfo:
    """A meter type as the ledger reads it (one read per batch)."""

    id: uuid.UUID
    api_name: str
    aggregation: str
    status: str
    active_from: datetime
    active_to: datetime | None
    reset_cron: str
    timezone: str
    capacity: Decimal | None
    thresholds: list[dict[str, Any]]
    dimensions: list[str]
    auto_create_meters: bool
    unit: str
    rules: list[FilteringRule]


class MeterChoice(NamedTuple):
    """One of a customer's meters of a type, as a record's candidate."""

    meter_id: uuid.UUID
    meter_key: str
    has_thresholds: bool


# The customers' meters by (meter type id, user id).
MetersByPair = dict[tuple[uuid.UUID, str], list[MeterChoice]]


class MissingMeter(NamedTuple):
    """A meter to create on first usage (its type creates meters automatically)."""

    meter_type: TypeInfo
    user_id: str


class NewMeterRow(NamedTuple):
    id: uuid.UUID
    meter_type_id: uuid.UUID
    user_id: str
    capacity: Decimal | None
    thresholds: str  # JSON text
    value: Decimal | None
    period_start: datetime
    period_end: datetime
    unit: str  # copied from the type at creation (seed 003), like timezone
    timezone: str


@dataclass(slots=True)
class MeterState:
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


class ParsedRecord(NamedTuple):
    """A record that passed step 1 (each record on its own), its meter type not looked up yet."""

    position: int  # in the batch (``index`` is tuple's own method)
    input: UsageInput
    key: str
    user_id: str
    value: Decimal | None  # None: the record has no value (an occurrence, for INCREMENT)
    timestamp: datetime
    meter_type_reference: uuid.UUID | str  # an id, or an api name


@dataclass(slots=True)
class FreshRecord:
    """A valid record bound for the ledger."""

    index: int
    input: UsageInput
    key: str
    meter_type: TypeInfo
    user_id: str
    value: Decimal
    timestamp: datetime
    dimensions: dict[str, Any]
    meter_id: uuid.UUID | None = None
    meter_has_thresholds: bool = False

    @property
    def bound_meter_id(self) -> uuid.UUID:
        """The meter of a record past ``bind_meters`` (which drops the records without one)."""
        assert self.meter_id is not None
        return self.meter_id


@dataclass(slots=True)
class Refusal:
    """A record bound for data correction, with its reason."""

    index: int
    key: str
    request_hash: str
    reason: str
    message: str
    record: Any
    node: str
    source_ref: str = ""


@dataclass(slots=True)
class Crossing:
    """A threshold a meter crossed upward; ``event_id`` is kept only for a new threshold event."""

    meter_id: uuid.UUID
    threshold_index: int
    name: str
    limit: Decimal
    value: Decimal
    period_start: datetime
    event_id: uuid.UUID | None = None
