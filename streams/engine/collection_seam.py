"""SEAM: where streams read the online collection log.

AWAITING THE COLLECTION LOG. The collection app's log (collected batches, one offset per consumer)
is being built in parallel, with two functions that run inside the caller's transaction:
``collected_batches_read(collector_id, consumer, limit)`` and
``consumer_offset_advance(collector_id, consumer, sequence)``. Until they exist on this branch,
``collected_batches_read`` here finds nothing to read (so a realtime or scheduled run has no work
and records no run) and ``consumer_offset_advance`` has nothing to advance. Once the collection
app provides them, these two functions call them; the lead adapts the batch shape in
``_as_batch`` if it differs.

A stream consumes each of its ``onlineCollector`` nodes' collectors as the consumer
``stream:<stream id>``; the run's effects and the offset move commit together, so a failed run
leaves the offset where it was and the retry reads the same batches.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CollectedBatch:
    sequence: int
    data: Any  # what POST …/collectors/{id}/data received: a string, an object or an array


def consumer_name(stream_id: uuid.UUID) -> str:
    return f"stream:{stream_id}"


def _collection_function(name: str) -> Callable | None:
    try:
        module = importlib.import_module("collection.services")
    except ImportError:
        return None
    return getattr(module, name, None)


def _as_batch(batch: Any) -> CollectedBatch:
    return CollectedBatch(sequence=int(batch.sequence), data=batch.data)


def collected_batches_read(*, collector_id: uuid.UUID, consumer: str, limit: int) -> list[CollectedBatch]:
    """The consumer's next batches in order, at most ``limit`` (none until collection exists)."""
    read = _collection_function("collected_batches_read")
    if read is None:
        return []
    return [_as_batch(batch) for batch in read(collector_id=collector_id, consumer=consumer, limit=limit)]


def consumer_offset_advance(*, collector_id: uuid.UUID, consumer: str, sequence: int) -> None:
    """Mark every batch up to ``sequence`` consumed, in the caller's transaction."""
    advance = _collection_function("consumer_offset_advance")
    if advance is not None:
        advance(collector_id=collector_id, consumer=consumer, sequence=sequence)


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
            try:
                value = json.loads(line)
            except ValueError:
                records.append(line)
                continue
            records.extend(value if isinstance(value, list) else [value])
        return records
    return [data]
