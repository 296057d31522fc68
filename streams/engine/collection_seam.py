"""Where streams read the online collection log (``collection.selectors.collected_batches_read``,
``collection.services.consumer_offset_advance``; both run inside the caller's transaction).

A stream consumes each of its ``onlineCollector`` nodes' collectors as the consumer
``stream:<stream id>``, registered when the stream is imported and unregistered when it is
deleted (``consumers_sync``), so pruning keeps every batch a stream has not consumed.

Every call names the stream's account, and collection resolves the collector id inside it only:
a node naming another account's collector is exactly a node naming an unknown one — never
registered, it reads nothing and holds back no pruning (issue 18). The run's
effects and the offset move commit together, so a failed run leaves the offset where it was and
the retry reads the same batches. Reading locks the consumer's offset row: two runs of one
stream take turns instead of reading the same batches.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec


@dataclass(frozen=True)
class CollectedBatch:
    sequence: int
    data: Any  # what POST …/collectors/{id}/data received: a string, an object or an array


def consumer_name(stream_id: uuid.UUID) -> str:
    return f"stream:{stream_id}"


def _decoded(payload: Any) -> Any:
    """The stored JSON text as Python values, decoded once per batch (msgspec, in C); what it
    refuses (a number beyond a double, NaN) is read by the standard library, and text that is
    not JSON at all stays text."""
    if not isinstance(payload, str | bytes):
        return payload
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        try:
            return json.loads(payload)
        except ValueError:
            return payload


def _as_batch(batch: Any) -> CollectedBatch:
    """``collection.models.CollectedBatch`` stores the JSON text of the request's ``data``."""
    return CollectedBatch(sequence=int(batch.sequence), data=_decoded(batch.payload))


def collected_batches_read(
    *,
    account_id: uuid.UUID,
    collector_id: uuid.UUID,
    consumer: str,
    limit: int,
    max_bytes: int | None = None,
) -> list[CollectedBatch]:
    """The consumer's next batches in order, at most ``limit`` and — beyond the first — at most
    ``max_bytes`` of stored JSON together (a run's memory stays bounded however large the
    batches); none when the consumer is not registered (a collector deleted meanwhile)."""
    from collection.exceptions import ConsumerNotRegistered
    from collection.selectors import collected_batches_read as read

    try:
        stored = read(
            account_id=account_id, collector_id=collector_id, consumer=consumer, limit=limit, lock=True
        )
    except ConsumerNotRegistered:
        return []
    taken, size = [], 0
    for batch in stored:
        size += batch.size_bytes
        if taken and max_bytes is not None and size > max_bytes:
            break
        taken.append(_as_batch(batch))
    return taken


def has_unread_batches(*, account_id: uuid.UUID, collector_id: uuid.UUID, consumer: str) -> bool:
    """Whether the collector's log holds a batch after the consumer's offset: a cheap read, no
    lock, to spare a run that would find nothing (a committed batch is always seen)."""
    from collection.models import CollectedBatch as StoredBatch
    from collection.models import ConsumerOffset

    offset = (
        ConsumerOffset.objects.filter(
            collector_id=collector_id, collector__account_id=account_id, consumer=consumer
        )
        .values_list("last_sequence", flat=True)
        .first()
    )
    return (
        offset is not None
        and StoredBatch.objects.filter(
            collector_id=collector_id, account_id=account_id, sequence__gt=offset
        ).exists()
    )


def consumer_offset_advance(
    *, account_id: uuid.UUID, collector_id: uuid.UUID, consumer: str, sequence: int
) -> None:
    """Mark every batch up to ``sequence`` consumed, in the caller's transaction."""
    from collection.services import consumer_offset_advance as advance

    advance(account_id=account_id, collector_id=collector_id, consumer=consumer, sequence=sequence)


def stream_collector_ids(nodes: list[dict]) -> set[uuid.UUID]:
    ids = set()
    for node in nodes or []:
        if node.get("type") == "onlineCollector":
            try:
                ids.add(uuid.UUID(str((node.get("config") or {}).get("collectorId"))))
            except ValueError:
                continue
    return ids


def consumers_sync(
    *, account_id: uuid.UUID, stream_id: uuid.UUID, previous_nodes: list[dict], nodes: list[dict]
) -> None:
    """Register the stream as a consumer of each of its account's collectors its
    ``onlineCollector`` nodes read (from the earliest retained batch), and unregister it from
    collectors it no longer reads. An id that is no collector of the account (unknown, deleted,
    or another account's) registers nothing: the node reads nothing."""
    from collection.exceptions import CollectorNotFound
    from collection.services import consumer_register, consumer_unregister

    name = consumer_name(stream_id)
    wanted = stream_collector_ids(nodes)
    for collector_id in sorted(stream_collector_ids(previous_nodes) - wanted):
        consumer_unregister(account_id=account_id, collector_id=collector_id, consumer=name)
    for collector_id in sorted(wanted):
        try:
            consumer_register(
                account_id=account_id, collector_id=collector_id, consumer=name, start="earliest"
            )
        except CollectorNotFound:
            continue


def batch_records(data: Any) -> list[Any]:
    """The records of one collected batch: an object is one record, an array its items, a string
    one JSON value per line (NDJSON; a line that is not JSON is kept as text and rejected by the
    input node)."""
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return list(data)
    if isinstance(data, str):
        records: list[Any] = []
        for line in data.splitlines():
            if not line.strip():
                continue
            value = _decoded(line)
            if value is line:  # not JSON: kept as text (the input node rejects it)
                records.append(line)
                continue
            records.extend(value if isinstance(value, list) else [value])
        return records
    return [data]
