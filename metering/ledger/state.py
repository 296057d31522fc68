"""Step 4 of ``usage_apply``: a meter's new state from the fresh records of its open period, computed
in Python under the meter's row lock: value (by the type's aggregation), groups (per guiding
rule), group breakdowns (per group-by values), carry fields and record count."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from metering import aggregation
from metering.ledger.encoding import encode, from_json, json_number, to_decimal
from metering.ledger.records import Crossing, FreshRecord, MeterOptions, MeterState, Results, TypeInfo
from metering.ledger.thresholds import crossed


def advance_meters(
    meters: dict[uuid.UUID, MeterState],
    counted: list[FreshRecord],
    options: MeterOptions | None,
    results: Results,
) -> tuple[list[MeterState], list[Crossing]]:
    """Each meter's new state from the fresh records of its open period (read under its lock)."""
    by_meter: dict[uuid.UUID, list[FreshRecord]] = {}
    for record in counted:
        meter = meters.get(record.bound_meter_id)
        # A meter deleted meanwhile counts nothing; the record stays in the ledger.
        if meter is not None and meter.period_start <= record.timestamp < meter.period_end:
            by_meter.setdefault(meter.id, []).append(record)
            result = results[record.index]
            if result is not None:
                result.counted = True
    changed: list[MeterState] = []
    crossings: list[Crossing] = []
    for meter_id in sorted(by_meter):
        meter = meters[meter_id]
        fresh = by_meter[meter_id]
        meter_type = fresh[0].meter_type
        before = to_decimal(meter.value)
        meter.value = _aggregate(meter_type.aggregation, before, fresh)
        _advance_groups(meter, meter_type, fresh)
        _advance_breakdowns(meter, meter_type, fresh, options)
        _advance_carry(meter, fresh, options)
        meter.record_count += len(fresh)
        changed.append(meter)
        crossings.extend(crossed(meter, before))
    return changed, crossings


def _aggregate(aggregation_name: str, held: Decimal | None, records: list[FreshRecord]) -> Decimal | None:
    return aggregation.fold(aggregation_name, held, [record.value for record in records])


def _fields(record: FreshRecord) -> dict[str, Any]:
    return record.input.fields if record.input.fields is not None else record.dimensions


def _advance_groups(meter: MeterState, meter_type: TypeInfo, fresh: list[FreshRecord]) -> None:
    """``groups``: the meter's value per guiding rule / category the records matched."""
    by_group: dict[str, list[FreshRecord]] = {}
    for record in fresh:
        if record.input.group is not None:
            by_group.setdefault(str(record.input.group), []).append(record)
    if not by_group:
        return
    groups = list(from_json(meter.groups) or [])
    positions = {item.get("key"): position for position, item in enumerate(groups)}
    for key, records in by_group.items():
        position = positions.get(key)
        held = groups[position] if position is not None else {"key": key, "value": None, "recordCount": 0}
        value = _aggregate(meter_type.aggregation, to_decimal(held.get("value")), records)
        updated = {
            "key": key,
            "value": json_number(value),
            "recordCount": int(held.get("recordCount") or 0) + len(records),
        }
        if position is None:
            groups.append(updated)
        else:
            groups[position] = updated
    meter.groups = groups


def _advance_breakdowns(
    meter: MeterState, meter_type: TypeInfo, fresh: list[FreshRecord], options: MeterOptions | None
) -> None:
    """``groupBreakdowns``: the meter's value per combination of the group-by fields' values."""
    group_by = (
        options.group_by if options is not None and options.group_by is not None else meter_type.dimensions
    )
    if not group_by:
        return
    by_values: dict[str, tuple[dict, list[FreshRecord]]] = {}
    for record in fresh:
        fields = _fields(record)
        values = {name: fields.get(name) for name in group_by}
        by_values.setdefault(encode(values), (values, []))[1].append(record)
    breakdowns = list(from_json(meter.group_breakdowns) or [])
    positions = {
        encode({name: (item.get("fields") or {}).get(name) for name in group_by}): position
        for position, item in enumerate(breakdowns)
    }
    for encoded, (values, records) in by_values.items():
        position = positions.get(encoded)
        held = (
            breakdowns[position]
            if position is not None
            else {"fields": values, "value": None, "recordCount": 0}
        )
        value = _aggregate(meter_type.aggregation, to_decimal(held.get("value")), records)
        updated = {
            "fields": values,
            "value": json_number(value),
            "recordCount": int(held.get("recordCount") or 0) + len(records),
        }
        if position is None:
            breakdowns.append(updated)
            positions[encoded] = len(breakdowns) - 1
        else:
            breakdowns[position] = updated
    meter.group_breakdowns = breakdowns


def _advance_carry(meter: MeterState, fresh: list[FreshRecord], options: MeterOptions | None) -> None:
    """carryFirst / carryLast: configured fields of the period's first and last record by time."""
    if options is None or not (options.carry_first or options.carry_last):
        return
    if options.carry_first:
        first = min(fresh, key=lambda record: record.timestamp)  # the first sent wins a tie
        held_at = (
            meter.carry_first_at
            if meter.carry_first_at and meter.carry_first_at >= meter.period_start
            else None
        )
        if held_at is None or first.timestamp < held_at:
            meter.carry_first = {name: _fields(first).get(name) for name in options.carry_first}
            meter.carry_first_at = first.timestamp
    if options.carry_last:
        last = max(reversed(fresh), key=lambda record: record.timestamp)  # the last sent wins a tie
        held_at = (
            meter.carry_last_at if meter.carry_last_at and meter.carry_last_at >= meter.period_start else None
        )
        if held_at is None or last.timestamp >= held_at:
            meter.carry_last = {name: _fields(last).get(name) for name in options.carry_last}
            meter.carry_last_at = last.timestamp
