"""Reprocessing a stream's data correction (``metering.corrections`` calls ``correction_route``
through the router ``wiring`` registers): the record goes through its meter node's routing again."""

from __future__ import annotations

import uuid

from metering.corrections import CorrectionRoute
from metering.models import DataCorrection
from streams.engine.metering_seam import (
    NO_TYPE,
    Routes,
    base_of,
    meter_key_of,
    meter_options,
    refused_input,
    routed_input,
    type_suffix,
    types_by_user,
    unrouted_reason,
)
from streams.engine.runtimes import MeterRuntime
from streams.models import Stream
from streams.nodes import node_config_parse


def correction_route(correction) -> CorrectionRoute:
    """Reprocessing a stream's data correction: the record goes through its meter node again —
    the node as the stream's **current** configuration has it (its guiding rules, groupBy and
    carry fields; a stream fixed since the record was refused applies) — and is counted into
    every meter of the matched category, as a run would. The keys keep the correction's base
    key, so a meter type the record reached the first time counts it once."""
    record = correction.record if isinstance(correction.record, dict) else {}
    base = base_of(correction.idempotency_key)
    stream_id = (correction.source_ref or "").split("/", 1)[0]
    stream = (
        Stream.objects.filter(pk=stream_id, account_id=correction.account_id).first()
        if _is_uuid(stream_id)
        else None
    )
    node = next(
        (
            item
            for item in (stream.nodes if stream else [])
            if item.get("id") == correction.node and item.get("type") == "meter"
        ),
        None,
    )
    if node is None:
        return CorrectionRoute(
            reason=DataCorrection.Reason.NO_MATCHING_METER,
            message=f"The stream's meter processor {correction.node!r} no longer exists.",
        )
    config = node_config_parse("meter", node.get("config") or {})
    runtime = MeterRuntime(node["id"], node.get("name", ""), config)
    meter_key = meter_key_of(config)
    try:
        routed = runtime.route(record)
    except ValueError as refused:
        # The ledger names the reason (no userId, no value, …) as it did the first time.
        return CorrectionRoute(
            inputs=[refused_input(record, node["id"], meter_key, f"{base}:{NO_TYPE}", str(refused))]
        )
    category = routed["_meter"]["category"]
    types = Routes(types_by_user(correction.account_id, meter_key, {routed["userId"]})).types(
        routed["userId"], category
    )
    if not types:
        return CorrectionRoute(
            reason=DataCorrection.Reason.NO_MATCHING_METER,
            message=unrouted_reason(meter_key, category) + ".",
        )
    grouped = bool(config.group_by)
    return CorrectionRoute(
        inputs=[
            routed_input(
                routed, record, node["id"], meter_key, f"{base}:{type_suffix(type_id)}", type_id, grouped
            )
            for type_id in types
        ],
        options=meter_options(config),
    )


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
