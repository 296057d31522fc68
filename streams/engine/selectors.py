"""Reads of the stream engine's state: session lookup, stream health, output deliveries,
realtime streams behind their collectors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from collection.models import CollectedBatch, ConsumerOffset
from config.api.errors import ValidationFailed
from streams.engine.keys import session_key
from streams.exceptions import AggregationSessionNotFound, AggregationStoreNotFound
from streams.models import AggregationSession, AggregationStore, OutputDelivery, Stream, StreamRun


def aggregation_session_lookup(
    *, account_id: uuid.UUID, store_id: str, field_values: list[str]
) -> AggregationSession:
    """The session whose key the aggregator computed from these values (in key-field order).

    Another account's store, or an unknown one, is 404 ``AGGREGATION_STORE_NOT_FOUND``; a count of
    values different from the store's key fields is 400; no such session is 404
    ``AGGREGATION_SESSION_NOT_FOUND``."""
    try:
        store_uuid = uuid.UUID(str(store_id))
    except ValueError:
        raise AggregationStoreNotFound()
    store = AggregationStore.objects.filter(account_id=account_id, store_id=store_uuid).first()
    if store is None:
        raise AggregationStoreNotFound()
    if len(field_values) != len(store.key_fields):
        raise ValidationFailed.for_field(
            "fieldValues",
            f"The store's sessions are keyed by {len(store.key_fields)} field(s) ({', '.join(store.key_fields)}): "
            f"give that many fieldValues, in that order; got {len(field_values)}.",
        )
    session = AggregationSession.objects.filter(store=store, key=session_key(field_values)).first()
    if session is None:
        raise AggregationSessionNotFound()
    return session


# --- Stream health -------------------------------------------------------------------------------

RUNS_EXAMINED = 50  # per stream: the consecutive failures and the collapsed run errors look this far back
DEAD_LETTERS_FAILING_HOURS = 24  # a dead letter younger than this makes the output "failing"


class HealthState(models.TextChoices):
    HEALTHY = "healthy", "healthy"
    LAGGING = "lagging", "lagging"
    OUTPUT_FAILING = "output failing", "output failing"
    FAILING = "failing", "failing"


@dataclass(frozen=True)
class ErrorLine:
    """One error message and how many times it happened, identical ones collapsed into one line:
    for runs the failed runs that ended with it, for an output the failed attempts of the
    deliveries whose last attempt ended with it."""

    source: str  # "run" or the output node's id
    message: str
    count: int
    last_at: datetime | None


@dataclass(frozen=True)
class StreamHealth:
    """How a stream is doing, for the admin's stream list and page, the dashboard and the graph.

    ``state``: ``failing`` when its latest finished run failed; else ``output failing`` when an
    output's oldest delivery is failing its attempts, or a dead letter is younger than 24 hours;
    else ``lagging`` when its oldest unconsumed collected batch is older than
    ``STREAM_LAG_WARNING_SECONDS`` (plus the schedule's interval for a batch stream); else
    ``healthy``. ``lag_batches``/``lag_seconds``: collected batches not consumed yet and the age
    of the oldest. ``consecutive_failures``: failed runs since the last one that succeeded.
    ``errors``: recent run failures and output delivery errors, identical messages collapsed.
    """

    stream_id: uuid.UUID
    state: str
    lag_batches: int
    lag_seconds: float
    consecutive_failures: int
    last_error: str
    errors: list[ErrorLine]
    outbox_pending: int
    outbox_dead: int
    outbox_oldest_pending_seconds: float


def _lag(stream_ids: list[uuid.UUID], now: datetime) -> dict[uuid.UUID, tuple[int, float]]:
    """Per stream: unconsumed collected batches (all its collectors) and the age of the oldest."""
    from collection.models import CollectedBatch, ConsumerOffset

    unread = CollectedBatch.objects.filter(
        collector_id=OuterRef("collector_id"), sequence__gt=OuterRef("last_sequence")
    ).order_by()
    rows = (
        ConsumerOffset.objects.filter(consumer__in=[f"stream:{stream_id}" for stream_id in stream_ids])
        .annotate(
            unread=Coalesce(
                Subquery(unread.values("collector_id").annotate(n=Count("sequence")).values("n")[:1]), 0
            ),
            oldest=Subquery(unread.order_by("sequence").values("received_at")[:1]),
        )
        .values_list("consumer", "unread", "oldest")
    )
    lag: dict[uuid.UUID, tuple[int, float]] = {}
    for consumer, count, oldest in rows:
        stream_id = uuid.UUID(consumer.split(":", 1)[1])
        batches, seconds = lag.get(stream_id, (0, 0.0))
        age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        lag[stream_id] = (batches + count, max(seconds, age))
    return lag


def _recent_runs(stream_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[tuple[str, str, datetime | None]]]:
    """Per stream, its last ``RUNS_EXAMINED`` finished runs (status, error, finished at), newest first."""
    ranked = (
        StreamRun.objects.filter(stream_id__in=stream_ids)
        .exclude(status=StreamRun.Status.RUNNING)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("stream_id")], order_by=[F("started_at").desc(), F("id").desc()]
            )
        )
        .filter(rank__lte=RUNS_EXAMINED)
        .order_by("stream_id", "rank")
        .values_list("stream_id", "status", "error", "finished_at")
    )
    runs: dict[uuid.UUID, list[tuple[str, str, datetime | None]]] = {}
    for stream_id, status, error, finished_at in ranked:
        runs.setdefault(stream_id, []).append((status, error, finished_at))
    return runs


def _outbox(stream_ids: list[uuid.UUID], now: datetime) -> tuple[dict, dict]:
    """Per stream: (pending, dead, oldest pending created_at) and its delivery errors collapsed."""
    totals = {
        row["stream_id"]: row
        for row in OutputDelivery.objects.filter(stream_id__in=stream_ids)
        .exclude(status=OutputDelivery.Status.DELIVERED)
        .values("stream_id")
        .annotate(
            pending=Count("id", filter=Q(status=OutputDelivery.Status.PENDING)),
            dead=Count("id", filter=Q(status=OutputDelivery.Status.DEAD)),
            oldest=Min("created_at", filter=Q(status=OutputDelivery.Status.PENDING)),
        )
        .order_by()
    }
    failing = (
        OutputDelivery.objects.filter(stream_id__in=stream_ids)
        .filter(
            Q(status=OutputDelivery.Status.PENDING, attempts__gt=0)
            | Q(
                status=OutputDelivery.Status.DEAD,
                last_attempt_at__gte=now - timedelta(hours=DEAD_LETTERS_FAILING_HOURS),
            )
        )
        .exclude(last_error__in=["", OutputDelivery.IN_FLIGHT])
        .values("stream_id", "node_id", "last_error")
        .annotate(count=Sum("attempts"), last_at=Max("last_attempt_at"))
        .order_by()
    )
    errors: dict[uuid.UUID, list[ErrorLine]] = {}
    for row in failing:
        errors.setdefault(row["stream_id"], []).append(
            ErrorLine(
                source=row["node_id"], message=row["last_error"], count=row["count"], last_at=row["last_at"]
            )
        )
    return totals, errors


def _collapsed(runs: list[tuple[str, str, datetime | None]]) -> list[ErrorLine]:
    lines: dict[str, ErrorLine] = {}
    for status, error, finished_at in runs:  # newest first: the first seen is the latest
        if status != StreamRun.Status.FAILED:
            continue
        held = lines.get(error)
        lines[error] = ErrorLine(
            source="run",
            message=error,
            count=(held.count if held else 0) + 1,
            last_at=held.last_at if held else finished_at,
        )
    return list(lines.values())


def streams_health(*, streams: list[Stream], now: datetime | None = None) -> dict[uuid.UUID, StreamHealth]:
    """The health of each of ``streams``, in a fixed number of queries whatever their number."""
    from django.conf import settings

    from streams.engine.schedules import interval_seconds

    now = now or timezone.now()
    ids = [stream.pk for stream in streams]
    if not ids:
        return {}
    lag = _lag(ids, now)
    runs = _recent_runs(ids)
    totals, output_errors = _outbox(ids, now)
    health: dict[uuid.UUID, StreamHealth] = {}
    for stream in streams:
        lag_batches, lag_seconds = lag.get(stream.pk, (0, 0.0))
        recent = runs.get(stream.pk, [])
        failures = 0
        for status, _, _ in recent:
            if status != StreamRun.Status.FAILED:
                break
            failures += 1
        outputs = sorted(output_errors.get(stream.pk, []), key=lambda line: line.last_at or now, reverse=True)
        errors = sorted(_collapsed(recent) + outputs, key=lambda line: line.last_at or now, reverse=True)
        outbox = totals.get(stream.pk, {})
        oldest = outbox.get("oldest")
        allowed_lag = settings.STREAM_LAG_WARNING_SECONDS
        if stream.processing_type == Stream.ProcessingType.BATCH:
            allowed_lag += interval_seconds(stream.annotation)
        if failures:
            state = HealthState.FAILING
        elif outputs:
            state = HealthState.OUTPUT_FAILING
        elif lag_batches and lag_seconds > allowed_lag:
            state = HealthState.LAGGING
        else:
            state = HealthState.HEALTHY
        health[stream.pk] = StreamHealth(
            stream_id=stream.pk,
            state=state.value,
            lag_batches=lag_batches,
            lag_seconds=lag_seconds,
            consecutive_failures=failures,
            last_error=errors[0].message if errors else "",
            errors=errors,
            outbox_pending=outbox.get("pending", 0),
            outbox_dead=outbox.get("dead", 0),
            outbox_oldest_pending_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        )
    return health


def stream_health(*, stream: Stream, now: datetime | None = None) -> StreamHealth:
    return streams_health(streams=[stream], now=now)[stream.pk]


def account_streams_health(
    *, account_id: uuid.UUID, now: datetime | None = None
) -> list[tuple[Stream, StreamHealth]]:
    """Every stream of the account with its health, the least healthy first (then by name): what
    the dashboard's panel lists."""
    streams = list(Stream.objects.filter(account_id=account_id).order_by("name", "id"))
    health = streams_health(streams=streams, now=now)
    severity = {state.value: index for index, state in enumerate(reversed(HealthState))}
    return sorted(
        ((stream, health[stream.pk]) for stream in streams), key=lambda pair: severity[pair[1].state]
    )


def output_deliveries_list(
    *, stream: Stream, status: str | None = None, node_id: str | None = None
) -> QuerySet[OutputDelivery]:
    """A stream's output deliveries, newest first (the API's list)."""
    deliveries = OutputDelivery.objects.filter(stream=stream).order_by("-id")
    if status:
        deliveries = deliveries.filter(status=status)
    if node_id:
        deliveries = deliveries.filter(node_id=node_id)
    return deliveries


def realtime_streams_behind(limit: int = 1000) -> list[str]:
    """Realtime streams whose consumer offset on some collector is behind that collector's log."""
    newest = (
        CollectedBatch.objects.filter(collector_id=OuterRef("collector_id"))
        .order_by()
        .values("collector_id")
        .annotate(top=Max("sequence"))
        .values("top")
    )
    consumers = (
        ConsumerOffset.objects.filter(consumer__startswith="stream:")
        .annotate(top=Subquery(newest))
        .values_list("consumer", "last_sequence", "top")
    )
    behind = {
        consumer.split(":", 1)[1] for consumer, last, top in consumers if top is not None and top > last
    }
    if not behind:
        return []
    realtime = Stream.objects.filter(pk__in=sorted(behind), processing_type=Stream.ProcessingType.REALTIME)
    return sorted(str(pk) for pk in realtime.values_list("pk", flat=True)[:limit])
