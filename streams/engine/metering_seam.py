"""Where the Meter processor hands its records to the usage ledger (``metering.ledger.usage_apply``,
source ``stream``), inside the run's transaction and never in a preview.

Routing: each record matched a guiding rule (``_meter.category``; no rules: any category); it is
counted into every meter of (the node's ``meterKey``, the record's ``userId``) whose meter type is
in that category: one ledger record per meter type, in the meter's ``groups`` entry of the rule's
category, with ``groupBy`` / ``carryFirst`` / ``carryLast`` applied (``MeterOptions``).

Idempotency: every ledger record has a deterministic key, so a retried run (which reads the same
collected batches again) never counts twice. A record's **base key** comes from the stream, the
node and either the record's own ``idempotencyKey`` field (then a record sent twice, in any
batch, counts once) or its place in the work: the run's first collected batch sequence
(``RunContext.source_position``) and the record's index in the node's input. The ledger key is
``<base>:<meter type>`` (``<base>:-`` for a record that reaches no meter type), so reprocessing a
correction — which keeps the base — never counts a record twice into a meter type it reached the
first time.

Refusals: records the engine refused (no userId, no value, bad timestamp, no guiding rule) and
records the ledger refuses (no meter of the category for this user, archived type, …) become
``DataCorrection`` rows (source ``stream``, ``source_ref`` ``<stream id>/<run id>``, ``node`` the
meter node id) with the ledger's reason. Reprocessing such a correction sends the record through
the meter node again (``corrections.correction_route``, registered with metering by ``wiring``).

Flush by stream execution (``flush: streamExecution``): after the ledger counted the run's
records, ``meters_flush_after_execution`` flushes and resets the meters they changed
(``metering.flush.meters_flush_executed``) and queues the metered records for the node's
downstream nodes, all in the run's transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metering.ledger import MeterOptions, UsageInput
    from streams.models import Stream, StreamRun
    from streams.nodes import MeterConfig


@dataclass(frozen=True)
class MeterNode:
    id: str
    name: str
    config: MeterConfig


@dataclass
class MeterSeamResult:
    """``out``: what the node passes downstream; ``rejected``: ``(record, reason)`` pairs;
    ``counted_meter_ids``: the meters whose state the records changed."""

    out: list[dict]
    rejected: list[tuple[Any, str]] = field(default_factory=list)
    counted_meter_ids: set[uuid.UUID] = field(default_factory=set)


NO_TYPE = "-"


def _digest(*parts: object, length: int) -> str:
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).hexdigest()[:length]


def _own_key(record: Any) -> str | None:
    own = record.get("idempotencyKey") if type(record) is dict else None
    if own is None or own == "" or isinstance(own, bool) or not isinstance(own, str | int):
        return None
    return str(own)


class _Keys:
    """Base keys of one node's records in one piece of work (see the module docstring)."""

    def __init__(self, stream_id: Any, node_id: str, position: str):
        self.stream_id, self.node_id = stream_id, node_id
        self.positional = f"stream:{_digest(stream_id, node_id, position, length=24)}:"

    def base(self, index: int, record: Any) -> str:
        if type(record) is dict and "idempotencyKey" in record:
            own = _own_key(record)
            if own is not None:
                return f"stream:{_digest(self.stream_id, self.node_id, 'id:' + own, length=32)}"
        return f"{self.positional}{index}"


def type_suffix(type_id: uuid.UUID | None) -> str:
    return type_id.hex[:12] if type_id is not None else NO_TYPE


def base_of(key: str) -> str:
    """The base key of a ledger key (``<base>:<meter type>``); a key of the earlier single-part
    format (``stream:<digest>``) is its own base."""
    return key.rsplit(":", 1)[0] if key.count(":") >= 2 else key


def meter_key_of(config: MeterConfig) -> str:
    return config.meter_key or "default"


def types_by_user(account_id, meter_key: str, user_ids) -> dict[str, list[tuple[str, uuid.UUID]]]:
    """``{userId: [(category, meter type id), …]}`` of the active meters of this meterKey."""
    from metering.models import Meter, MeterType

    found: dict[str, list[tuple[str, uuid.UUID]]] = {}
    rows = (
        Meter.objects.filter(
            account_id=account_id,
            meter_key=meter_key,
            user_id__in=sorted(user_ids),
            meter_type__status=MeterType.Status.ACTIVE,
        )
        .order_by("meter_type_id")
        .values_list("user_id", "meter_type__category", "meter_type_id")
    )
    for user_id, category, type_id in rows:
        found.setdefault(user_id, []).append((category, type_id))
    return found


class Routes:
    """The meter types a (userId, category) is counted into, computed once per pair."""

    def __init__(self, types_by_user: dict[str, list[tuple[str, uuid.UUID]]]):
        self.types_by_user = types_by_user
        self.cache: dict[tuple[str, str | None], list[uuid.UUID]] = {}

    def types(self, user_id: str, category: str | None) -> list[uuid.UUID]:
        pair = (user_id, category)
        found = self.cache.get(pair)
        if found is None:
            found = self.cache[pair] = [
                type_id
                for held, type_id in self.types_by_user.get(user_id, ())
                if category is None or held == category
            ]
        return found


def unrouted_reason(meter_key: str, category: str | None) -> str:
    return f"no meter of meterKey {meter_key} for this userId" + (
        f" in category {category}" if category is not None else ""
    )


def meter_options(config: MeterConfig) -> MeterOptions:
    from metering.ledger import MeterOptions

    return MeterOptions(
        group_by=tuple(config.group_by) or None,
        carry_first=tuple(config.carry_first),
        carry_last=tuple(config.carry_last),
    )


def routed_input(
    annotated: dict,
    original: Any,
    node_id: str,
    meter_key: str,
    key: str,
    meter_type_id: uuid.UUID,
    grouped: bool,
) -> UsageInput:
    """The ledger record of a routed record. ``fields`` (what carry and group-by read) is the
    routed record itself, plus the group-by values under their paths when the node groups."""
    from metering.ledger import UsageInput

    meter = annotated["_meter"]
    return UsageInput(
        user_id=annotated["userId"],
        value=annotated["value"],
        timestamp=annotated.get("timestamp"),
        meter_type_id=meter_type_id,
        meter_key=meter_key,
        idempotency_key=key,
        fields={**annotated, **meter["groupBy"]} if grouped else annotated,
        group=meter["groupsKey"],
        node=node_id,
        record=original,
    )


def refused_input(record: Any, node_id: str, meter_key: str, key: str, reason: str) -> UsageInput:
    """A record the engine refused for ``reason``: the ledger keeps it in data correction, under the
    first reason it finds (no userId, no value, …), else NO_MATCHING_METER with ``reason``."""
    from metering.ledger import UsageInput

    original = record if type(record) is dict else {"record": record}
    return UsageInput(
        user_id=original.get("userId"),
        value=original.get("value"),
        timestamp=original.get("timestamp"),
        meter_key=meter_key,
        idempotency_key=key,
        node=node_id,
        record=original,
        refusal=reason[:1].upper() + reason[1:] + ".",
    )


def apply_meter_records(
    stream: Stream,
    node: MeterNode,
    records: list[Any],
    routed: list[dict | None],
    refusals: dict[int, str],
    run: StreamRun | None,
    position: str = "",
) -> MeterSeamResult:
    """Count the node's input in the caller's transaction. ``records``: the node's input;
    ``routed[i]``: ``records[i]`` annotated by the node, or ``None`` when the node refused it
    (``refusals[i]``, the reason). Every refused or unroutable record goes to data correction."""
    from metering.ledger import Outcome, UsageInput, usage_apply
    from metering.models import UsageSource

    meter_key = meter_key_of(node.config)
    position = position or (f"run:{run.pk}" if run is not None else "")
    keys = _Keys(stream.pk, node.id, position)
    routes = Routes(
        types_by_user(
            stream.account_id,
            meter_key,
            {annotated["userId"] for annotated in routed if annotated is not None},
        )
    )
    grouped = bool(node.config.group_by)
    suffixes: dict[uuid.UUID, str] = {}
    inputs: list[UsageInput] = []
    owners: list[int] = []  # the index in ``records`` of each ledger record
    reasons = dict(refusals)
    node_id, types_of, base_of_record = node.id, routes.types, keys.base
    add_input, add_owner = inputs.append, owners.append
    # The hot loop of the Meter processor: one ledger record per (record, meter type), built
    # positionally (no per-record helper calls or dictionaries beyond the record's own).
    for index, annotated in enumerate(routed):
        record = records[index]
        base = base_of_record(index, record)
        if annotated is None:
            refusal = reasons.get(index) or "the meter processor refused the record"
            add_input(refused_input(record, node_id, meter_key, f"{base}:{NO_TYPE}", refusal))
            add_owner(index)
            continue
        meter = annotated["_meter"]
        category = meter["category"]
        user_id = annotated["userId"]
        types = types_of(user_id, category)
        if not types:
            reasons[index] = unrouted = unrouted_reason(meter_key, category)
            add_input(refused_input(record, node_id, meter_key, f"{base}:{NO_TYPE}", unrouted))
            add_owner(index)
            continue
        fields = {**annotated, **meter["groupBy"]} if grouped else annotated
        for type_id in types:
            suffix = suffixes.get(type_id) or suffixes.setdefault(type_id, type_suffix(type_id))
            # UsageInput(user_id, value, timestamp, meter_type_id, meter_api_name, meter_key,
            #            dimensions, idempotency_key, request_hash, fields, group, node, record)
            add_input(
                UsageInput(
                    user_id,
                    annotated["value"],
                    annotated.get("timestamp"),
                    type_id,
                    None,
                    meter_key,
                    None,
                    f"{base}:{suffix}",
                    "",
                    fields,
                    meter["groupsKey"],
                    node_id,
                    record,
                )
            )
            add_owner(index)
    if not inputs:
        return MeterSeamResult(out=[])
    result = usage_apply(
        account_id=stream.account_id,
        records=inputs,
        source=UsageSource.STREAM,
        source_ref=f"{stream.pk}/{run.pk if run is not None else ''}"[:100],
        options=meter_options(node.config),
    )
    rejected: dict[int, str] = {}
    counted: set[uuid.UUID] = set()
    for owner, outcome in zip(owners, result.results, strict=True):
        if outcome.outcome == Outcome.CORRECTION:
            if owner not in rejected:
                rejected[owner] = reasons.get(owner) or f"{outcome.reason}: {outcome.message}"
        elif outcome.counted:
            counted.add(outcome.meter_id)
    return MeterSeamResult(
        out=[
            annotated
            for index, annotated in enumerate(routed)
            if annotated is not None and index not in rejected
        ],
        rejected=[(records[index], rejected[index]) for index in sorted(rejected)],
        counted_meter_ids=counted,
    )


def execution_ref(stream: Stream, node_id: str, position: str) -> str:
    """What identifies one stream execution's flush of one node, stable across retries of the
    same work (``position``: the run's first collected batch, else the run)."""
    return f"{stream.pk}/{node_id}/{position}"


def meters_flush_after_execution(
    stream: Stream, node: MeterNode, meter_ids: set[uuid.UUID], position: str, now
) -> int:
    """``flush: streamExecution``: flush and reset the meters this execution counted, and queue
    their metered records for the node's downstream nodes, in the run's transaction. Returns the
    number of records written."""
    from metering.flush import meters_flush_executed
    from streams.engine.flushes import flushed_records_queue

    batch = meters_flush_executed(
        meter_ids=sorted(meter_ids), execution_ref=execution_ref(stream, node.id, position), now=now
    )
    if batch.records and any(edge.get("source") == node.id for edge in stream.edges):
        flushed_records_queue(stream=stream, node_id=node.id, records=batch.records, now=now)
    return len(batch.records)
