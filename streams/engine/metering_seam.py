"""Where the Meter processor hands its records to the usage ledger (``metering.ledger.usage_apply``,
source ``stream``), inside the run's transaction and never in a preview.

Routing: each record matched a guiding rule (``_meter.category``; no rules: any category); it is
counted into every meter of (the node's ``meterKey``, the record's ``userId``) whose meter type is
in that category: one ledger record per meter type, in the meter's ``groups`` entry of the rule's
category, with ``groupBy`` / ``carryFirst`` / ``carryLast`` applied (``MeterOptions``).

Idempotency: every ledger record has a deterministic key, so a retried run (which reads the same
collected batches again) never counts twice: ``sha256(stream, node, position, identity, meter
type)`` where position is the run's first collected batch sequence (``RunContext.source_position``)
and identity the record's index in the node's input, or the record's own ``idempotencyKey`` field
when it has one (then a record sent twice, in any batch, counts once).

Refusals: records the engine refused (no userId, no value, bad timestamp, no guiding rule) and
records the ledger refuses (no meter of the category for this user, archived type, …) become
``DataCorrection`` rows (source ``stream``, ``source_ref`` ``<stream id>/<run id>``, ``node`` the
meter node id) with the ledger's reason. Reprocessing such a correction sends it through this
node's routing again (``correction_route``, registered with metering in ``StreamsConfig.ready``).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.models import Stream, StreamRun
    from streams.nodes import MeterConfig


@dataclass(frozen=True)
class MeterNode:
    id: str
    name: str
    config: MeterConfig


@dataclass
class MeterSeamResult:
    """``out``: what the node passes downstream; ``rejected``: ``(record, reason)`` pairs."""

    out: list[dict]
    rejected: list[tuple[dict, str]] = field(default_factory=list)


NO_RULE_SENTINEL = "(no meter type: the record was refused by the meter processor)"


def _key(*parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).hexdigest()
    return f"stream:{digest[:48]}"


def _plain(record: dict) -> dict:
    return {name: value for name, value in record.items() if name != "_meter"}


def meter_key_of(config: MeterConfig) -> str:
    return config.meter_key or "default"


def _types_by_user(account_id, meter_key: str, user_ids: set[str]) -> dict[str, list[tuple[str, uuid.UUID]]]:
    """``{userId: [(category, meter type id), …]}`` of the active meters of this meterKey."""
    from metering.models import Meter, MeterType

    found: dict[str, list[tuple[str, uuid.UUID]]] = {}
    rows = (Meter.objects.filter(account_id=account_id, meter_key=meter_key, user_id__in=sorted(user_ids),
                                 meter_type__status=MeterType.Status.ACTIVE)
            .order_by("meter_type_id").values_list("user_id", "meter_type__category", "meter_type_id"))
    for user_id, category, type_id in rows:
        found.setdefault(user_id, []).append((category, type_id))
    return found


def _routed_types(types: list[tuple[str, uuid.UUID]], category: str | None) -> list[uuid.UUID]:
    return [type_id for held, type_id in types if category is None or held == category]


def _options(config: MeterConfig):
    from metering.ledger import MeterOptions

    return MeterOptions(group_by=tuple(config.group_by) or None, carry_first=tuple(config.carry_first),
                        carry_last=tuple(config.carry_last))


def _usage_input(record: dict, node_id: str, meter_key: str, key: str, meter_type_id: uuid.UUID | None):
    from metering.ledger import UsageInput

    meter = record.get("_meter") or {}
    fields = {**_plain(record), **(meter.get("groupBy") or {})}
    return UsageInput(
        user_id=record.get("userId"), value=record.get("value"), timestamp=record.get("timestamp"),
        meter_type_id=meter_type_id, meter_api_name=None if meter_type_id else NO_RULE_SENTINEL,
        meter_key=meter_key, idempotency_key=key, fields=fields,
        group=meter.get("groupsKey") if meter else None, node=node_id, record=_plain(record),
    )


def apply_meter_records(stream: Stream, node: MeterNode, records: list[dict], run: StreamRun | None,
                        refused: list[tuple[dict, str]] = (), position: str = "") -> MeterSeamResult:
    """Count ``records`` (routed) and send ``refused`` (the engine's rejections) to data
    correction, in the caller's transaction. ``out``: the records the ledger accepted (or had
    counted already); ``rejected``: every record that went to data correction, with its reason."""
    from metering.ledger import Outcome, usage_apply
    from metering.models import UsageSource

    meter_key = meter_key_of(node.config)
    position = position or (f"run:{run.pk}" if run is not None else "")
    types = _types_by_user(stream.account_id, meter_key, {record["userId"] for record in records})
    inputs = []
    unrouted: dict[int, str] = {}
    owners: list[tuple[int, dict]] = []  # (index in ``records`` or -1 - index in ``refused``, record)
    for index, record in enumerate(records):
        own = record.get("idempotencyKey")
        identity = f"id:{own}" if isinstance(own, str | int) and not isinstance(own, bool) and own != "" \
            else f"at:{index}"
        category = (record.get("_meter") or {}).get("category")
        routed = _routed_types(types.get(record["userId"], []), category)
        if not routed:
            unrouted[index] = (f"no meter of meterKey {meter_key} for this userId"
                               + (f" in category {category}" if category is not None else ""))
        for type_id in routed or [None]:
            # A record's own key is stable across batches; otherwise its place in this work is.
            where = "" if identity.startswith("id:") else position
            inputs.append(_usage_input(record, node.id, meter_key,
                                       _key(stream.pk, node.id, where, identity, type_id or ""), type_id))
            owners.append((index, record))
    for index, (record, _reason) in enumerate(refused):
        original = record if isinstance(record, dict) else {"record": record}
        own = original.get("idempotencyKey")
        key = _key(stream.pk, node.id, "", f"id:{own}", "refused") \
            if isinstance(own, str | int) and not isinstance(own, bool) and own != "" \
            else _key(stream.pk, node.id, position, "refused", index)
        inputs.append(_usage_input(original, node.id, meter_key, key, None))
        owners.append((-1 - index, original))
    if not inputs:
        return MeterSeamResult(out=[])
    result = usage_apply(account_id=stream.account_id, records=inputs, source=UsageSource.STREAM,
                         source_ref=f"{stream.pk}/{run.pk if run is not None else ''}"[:100],
                         options=_options(node.config))
    refused_reasons = {-1 - index: reason for index, (_record, reason) in enumerate(refused)}
    out: dict[int, dict] = {}
    rejected: dict[int, tuple[dict, str]] = {}
    for (owner, record), outcome in zip(owners, result.results, strict=True):
        if outcome.outcome == Outcome.CORRECTION:
            reason = refused_reasons.get(owner) or unrouted.get(owner) or f"{outcome.reason}: {outcome.message}"
            rejected.setdefault(owner, (_plain(record), reason))
        elif owner >= 0 and outcome.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE):
            out.setdefault(owner, record)
    return MeterSeamResult(out=[out[index] for index in sorted(out) if index not in rejected],
                           rejected=[rejected[owner] for owner in sorted(rejected, key=lambda o: (o < 0, abs(o)))])


def correction_route(correction) -> Any:
    """Reprocessing a stream's data correction: the record goes through its meter node's routing
    again (the stream's current configuration), keeping the correction's idempotency key. A
    record that is still refused gets a reference no meter type has, so it stays OPEN."""
    from streams.engine.runtimes import MeterRuntime
    from streams.models import Stream
    from streams.nodes import node_config_parse

    record = correction.record if isinstance(correction.record, dict) else {}
    stream_id = (correction.source_ref or "").split("/", 1)[0]
    stream = Stream.objects.filter(pk=stream_id, account_id=correction.account_id).first() \
        if _is_uuid(stream_id) else None
    node = next((item for item in (stream.nodes if stream else []) if item.get("id") == correction.node
                 and item.get("type") == "meter"), None)
    if node is None:
        return _usage_input(record, correction.node, "default", correction.idempotency_key, None)
    config = node_config_parse("meter", node.get("config") or {})
    runtime = MeterRuntime(node["id"], node.get("name", ""), config)
    meter_key = meter_key_of(config)
    try:
        routed = runtime.route(record)
    except ValueError:
        return _usage_input(record, node["id"], meter_key, correction.idempotency_key, None)
    types = _routed_types(_types_by_user(correction.account_id, meter_key, {routed["userId"]})
                          .get(routed["userId"], []), routed["_meter"]["category"])
    return _usage_input(routed, node["id"], meter_key, correction.idempotency_key, types[0] if types else None)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
