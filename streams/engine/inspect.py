"""The inspect node's memory: the last ``keepLast`` records per (stream, node)."""

from __future__ import annotations

from streams.engine.context import RunContext
from streams.models import InspectRecord


def inspect_records_keep(*, context: RunContext, node_id: str, records: list, keep_last: int) -> None:
    """Store the batch's last ``keep_last`` records and forget older ones (two statements)."""
    latest = records[-keep_last:]
    InspectRecord.objects.bulk_create(
        [
            InspectRecord(
                account_id=context.account_id,
                stream=context.stream,
                node_id=node_id,
                run=context.run,
                record=record,
                created_at=context.now,
            )
            for record in latest
        ]
    )
    older = list(
        InspectRecord.objects.filter(stream=context.stream, node_id=node_id)
        .order_by("-id")
        .values_list("id", flat=True)[keep_last : keep_last + 1]
    )
    if older:
        InspectRecord.objects.filter(stream=context.stream, node_id=node_id, id__lte=older[0]).delete()
