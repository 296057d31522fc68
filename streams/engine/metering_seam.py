"""SEAM: where the Meter processor hands its records to the usage ledger.

AWAITING THE LEDGER. The metering app's ``usage_apply(account_id=…, records=[…], source=…)``
(validation, deduplication, append, meter updates, data correction for bad records) is being built
in parallel. Until the lead wires it here, ``apply_meter_records`` writes NOTHING: it hands the
routed records back unchanged as the node's output and rejects none. Nothing is metered yet.

What the engine guarantees to the ledger at this seam (``streams.engine.runtimes.MeterRuntime``):
every record has a non-empty string ``userId``, a finite numeric ``value``, a ``timestamp``
normalised to ``2023-07-01T00:00:00.000Z`` when the record had one (ISO 8601 with a zone, or Unix
milliseconds), and ``_meter = {"meterKey", "guidingRule", "category", "groupsKey", "groupBy"}``:
the first guiding rule that matched (its index and category; null without rules), the key of the
meter's ``groups`` entry it counts into, and the values of the node's ``groupBy`` fields (for
``groupBreakdowns``). Records the engine already refused (no userId, no value, a bad timestamp, no
matching rule) are rejections of the node and never reach this function. It is called inside the
run's transaction and never in a preview (dry run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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


def apply_meter_records(stream: Stream, node: MeterNode, records: list[dict], run: StreamRun | None) -> MeterSeamResult:
    """Awaiting the ledger: returns ``records`` unchanged as ``out`` and writes nothing."""
    return MeterSeamResult(out=list(records))
