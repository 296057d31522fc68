"""How the stream engine connects to collection and metering without them importing streams:
hooks registered in ``StreamsConfig.ready()``.

- ``collection.services.BATCH_STORED_HOOKS``: after a collected batch commits, each realtime
  stream reading that collector gets a ``streams.run_stream`` task (a lost enqueue is caught up
  by the ``streams.catch_up_realtime`` task, run by beat every few seconds).
- ``metering.corrections.CORRECTION_ROUTERS["stream"]``: reprocessing a stream's data
  correction re-runs its meter node's routing.
"""

from __future__ import annotations

import logging
import uuid

from config.ttlcache import TtlCache
from streams.engine.flushes import flushed_records_queue

logger = logging.getLogger(__name__)

READERS_CACHE_SECONDS = 2.0
_readers: TtlCache[list[str]] = TtlCache(ttl=lambda: READERS_CACHE_SECONDS)


def realtime_readers(collector_id: uuid.UUID) -> list[str]:
    """Ids of the realtime streams of the collector's own account reading this collector (cached
    in-process for 2 s: a stream imported meanwhile is caught up by the sweep). A stream of another
    account naming the collector is not one of them (its reference resolves to nothing)."""
    from streams.models import Stream, StreamResourceRef

    held = _readers.get(collector_id)
    if held is not None:
        return held
    ids = sorted(
        str(pk)
        for pk in StreamResourceRef.objects.filter(
            resource_type="onlineCollector",
            resource_id=str(collector_id),
            stream__processing_type=Stream.ProcessingType.REALTIME,
            stream__account__collectors__id=collector_id,
        )
        .values_list("stream_id", flat=True)
        .distinct()
    )
    _readers.put(collector_id, ids)
    return ids


def collector_batch_stored(collector_id: uuid.UUID) -> None:
    """A batch committed: wake each realtime stream reading the collector."""
    from kombu.exceptions import OperationalError as BrokerError

    from streams.tasks import run_stream

    for stream_id in realtime_readers(collector_id):
        try:
            run_stream.delay(stream_id, "realtime")
        except BrokerError as exc:
            logger.warning(
                "streams: could not enqueue the run of stream %s: %s; the sweep will", stream_id, exc
            )


def flushed_records(records) -> None:
    """Inside the period-end flush transaction: queue the records of each meterKey for the
    downstream nodes of the meter nodes that count it (``FlushDelivery``, the durable outbox,
    written in this same transaction: a flush that commits is delivered, one that rolls back is
    not). A node that flushes by stream execution gets only the records that still hold
    something no execution flushed (``recordCount`` > 0: a reprocessed correction, a late
    record); its executions' own records were queued when they ran."""
    from streams.models import Stream, StreamResourceRef

    by_key: dict[str, list[dict]] = {}
    for record in records:
        by_key.setdefault(record.get("meterKey") or "", []).append(record)
    accounts = sorted({str(record.get("accountId")) for record in records if record.get("accountId")})
    refs = (
        StreamResourceRef.objects.filter(
            resource_type="meterKey", resource_id__in=sorted(by_key), stream__account_id__in=accounts
        )
        .values_list("stream_id", flat=True)
        .distinct()
    )
    for stream in Stream.objects.filter(pk__in=list(refs)).order_by("pk"):
        for node in stream.nodes:
            config = node.get("config") or {}
            if (
                node.get("type") != "meter"
                or config.get("meterKey") not in by_key
                or not any(edge.get("source") == node["id"] for edge in stream.edges)
            ):
                continue
            by_execution = config.get("flush", "periodEnd") == "streamExecution"
            chosen = [
                record
                for record in by_key[config["meterKey"]]
                if record.get("accountId") == str(stream.account_id)
                and (not by_execution or (record.get("meterMetaData") or {}).get("recordCount"))
            ]
            if chosen:
                flushed_records_queue(stream=stream, node_id=node["id"], records=chosen)


def connect() -> None:
    from collection.services import batch_stored_hook_register
    from metering.corrections import correction_router_register
    from metering.flush import flushed_records_hook_register
    from metering.models import UsageSource
    from streams.engine.corrections import correction_route

    batch_stored_hook_register(collector_batch_stored)
    flushed_records_hook_register(flushed_records)
    correction_router_register(UsageSource.STREAM, correction_route)
