"""The outbox of flushed metered records: a flush queues its records for the downstream nodes of a
Meter processor (``FlushDelivery``, in the flush's transaction); a worker delivers them once it
commits (``services.stream_flush_deliver``), or the sweep does."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from streams.engine.task_queue import DELIVER_FLUSHED_RECORDS, streams_task
from streams.models import FlushDelivery, Stream

logger = logging.getLogger(__name__)


def flushed_records_queue(
    *, stream: Stream, node_id: str, records: list[dict], now: datetime | None = None
) -> FlushDelivery:
    """Queue a flush's metered records for the downstream nodes of the Meter processor
    ``node_id``, in the caller's (the flush's) transaction; once it commits a worker is asked to
    deliver them (if that request is lost, the sweep delivers them within seconds)."""
    now = now or timezone.now()
    delivery = FlushDelivery.objects.create(
        account_id=stream.account_id,
        stream=stream,
        node_id=node_id,
        records=records,
        record_count=len(records),
        created_at=now,
        next_attempt_at=now,
    )
    stream_id = str(stream.pk)
    transaction.on_commit(lambda: _delivery_wake(stream_id, node_id))
    return delivery


def _delivery_wake(stream_id: str, node_id: str) -> None:
    from kombu.exceptions import OperationalError as BrokerError

    try:
        streams_task(DELIVER_FLUSHED_RECORDS).delay(stream_id, node_id)
    except BrokerError as exc:
        logger.warning(
            "streams: could not enqueue the flush delivery of %s/%s: %s; the sweep will",
            stream_id,
            node_id,
            exc,
        )
