"""Every write the stream engine makes: runs, previews (which write nothing), session timeouts.

A run executes the stream's plan inside ONE transaction together with everything it changes
(deduplication keys, sessions, inspected records, the meter seam, the collected offsets it
consumed) and the run's own SUCCEEDED record. If a node fails the transaction rolls back — the
offsets stay, the sessions stay — and the run is recorded FAILED with the error; running it again
does the same work again, never half of it twice.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from config.api.errors import ValidationFailed
from streams.engine import collection_seam, dedup
from streams.engine.cel import limits as cel_limits
from streams.engine.context import NodeFailed, RunContext
from streams.engine.plan import PlanInvalid, RunResult, StreamPlan, plan_build, plan_execute
from streams.engine.sessions import session_emitted_record
from streams.exceptions import StreamNotFound
from streams.models import AggregationSession, FlushDelivery, Stream, StreamRun
from streams.nodes import OnlineCollectorConfig
from streams.selectors import stream_snapshot_for_tag

logger = logging.getLogger(__name__)

PREVIEW_MAX_RECORDS = 1000
COLLECTED_BATCHES_PER_RUN = 100
COLLECTED_BYTES_PER_RUN = 16 * 1024 * 1024  # of stored JSON: beyond the first batch, a run reads no more
SWEEP_SESSIONS_PER_NODE = 500
SWEEP_MAX_NODES = 100
FLUSH_DELIVERIES_PER_RUN = 20
FLUSH_RETRY_BASE_SECONDS = 5
FLUSH_RETRY_MAX_SECONDS = 300


def _stream(stream_id: uuid.UUID | str) -> Stream:
    try:
        return Stream.objects.get(pk=stream_id)
    except (Stream.DoesNotExist, ValueError):
        raise StreamNotFound()


# --- Where a run's records come from -------------------------------------------------------------


@dataclass
class Entry:
    """Records for input nodes (``inputs``) or as a node's output (``injected``)."""

    inputs: dict[str, list] = field(default_factory=dict)
    injected: dict[str, list[dict]] = field(default_factory=dict)
    first_sequence: int | None = None
    last_sequence: int | None = None


class Source(Protocol):
    """Where a run's records come from; ``commit`` runs in the run's transaction once it succeeded."""

    def read(self, plan: StreamPlan, context: RunContext) -> Entry | None: ...

    def commit(self, entry: Entry) -> None: ...


class RecordsSource:
    """Records given by the caller, fed to every input node (or to ``input_node_ids``)."""

    def __init__(self, records: list[Any], input_node_ids: Iterable[str] | None = None):
        self.records = records
        self.input_node_ids = list(input_node_ids) if input_node_ids is not None else None

    def read(self, plan: StreamPlan, context: RunContext) -> Entry | None:
        node_ids = self.input_node_ids if self.input_node_ids is not None else plan.input_node_ids()
        return Entry(inputs={node_id: self.records for node_id in node_ids})

    def commit(self, entry: Entry) -> None:
        return None


class CollectedSource:
    """The next collected batches of every collector the stream's ``onlineCollector`` nodes read
    (through ``collection_seam``), consumed as ``stream:<id>``; offsets advance with the run."""

    def __init__(self, stream: Stream, batch_limit: int):
        self.stream = stream
        self.batch_limit = batch_limit
        self.last_by_collector: dict[uuid.UUID, int] = {}

    def read(self, plan: StreamPlan, context: RunContext) -> Entry | None:
        consumer = collection_seam.consumer_name(self.stream.pk)
        records_by_collector: dict[uuid.UUID, list] = {}
        entry = Entry()
        for node in plan.nodes_of_type("onlineCollector"):
            assert isinstance(node.config, OnlineCollectorConfig)
            collector_id = node.config.collector_id
            if collector_id not in records_by_collector:
                batches = collection_seam.collected_batches_read(
                    account_id=self.stream.account_id,
                    collector_id=collector_id,
                    consumer=consumer,
                    limit=self.batch_limit,
                    max_bytes=COLLECTED_BYTES_PER_RUN,
                )
                records_by_collector[collector_id] = [
                    record for batch in batches for record in collection_seam.batch_records(batch.data)
                ]
                if batches:
                    self.last_by_collector[collector_id] = batches[-1].sequence
                    first, last = batches[0].sequence, batches[-1].sequence
                    entry.first_sequence = (
                        first if entry.first_sequence is None else min(entry.first_sequence, first)
                    )
                    entry.last_sequence = (
                        last if entry.last_sequence is None else max(entry.last_sequence, last)
                    )
            entry.inputs[node.id] = records_by_collector[collector_id]
        return entry if self.last_by_collector else None

    def commit(self, entry: Entry) -> None:
        consumer = collection_seam.consumer_name(self.stream.pk)
        for collector_id, sequence in sorted(self.last_by_collector.items()):
            collection_seam.consumer_offset_advance(
                account_id=self.stream.account_id,
                collector_id=collector_id,
                consumer=consumer,
                sequence=sequence,
            )


class TimedOutSessionsSource:
    """Sessions of one aggregator node whose ``timeout_at`` passed, claimed with ``SELECT … FOR
    UPDATE SKIP LOCKED`` (a concurrent sweep skips them) and deleted in the run's transaction:
    each session is emitted exactly once, or not at all if the run fails."""

    def __init__(self, stream: Stream, node_id: str, limit: int):
        self.stream = stream
        self.node_id = node_id
        self.limit = limit

    def read(self, plan: StreamPlan, context: RunContext) -> Entry | None:
        due = list(
            AggregationSession.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("store")
            .filter(stream=self.stream, node_id=self.node_id, timeout_at__lte=context.now)
            .order_by("timeout_at", "key")[: self.limit]
        )
        claimed = _sessions_delete_returning([session.pk for session in due])
        sessions = [session for session in due if session.pk in claimed]
        if not sessions:
            return None
        if self.node_id not in plan.nodes:
            # The aggregator was removed from the stream: its sessions go with it, emitted nowhere.
            logger.info(
                "stream %s: %d timed-out sessions of removed node %s dropped",
                self.stream.pk,
                len(sessions),
                self.node_id,
            )
            return Entry()
        return Entry(
            injected={self.node_id: [session_emitted_record(session, session.store) for session in sessions]}
        )

    def commit(self, entry: Entry) -> None:
        return None


def _sessions_delete_returning(ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Delete these sessions; return the ids this statement deleted (not a concurrent sweep)."""
    if not ids:
        return set()
    table = connection.ops.quote_name(AggregationSession._meta.db_table)
    id_field = AggregationSession._meta.pk
    values = [id_field.get_db_prep_value(value, connection) for value in ids]
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(values))}) RETURNING id",  # noqa: S608
            values,
        )
        return {uuid.UUID(str(row[0])) for row in cursor.fetchall()}


# --- Runs ------------------------------------------------------------------------------------------


def _succeeded(run: StreamRun, result: RunResult, entry: Entry) -> None:
    run.status = StreamRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.records_in, run.records_out, run.records_rejected = (
        result.records_in,
        result.records_out,
        result.records_rejected,
    )
    run.node_counts = result.node_counts()
    run.rejections = [rejection.as_dict() for rejection in result.rejections[: StreamRun.REJECTIONS_KEPT]]
    run.source_first_sequence, run.source_last_sequence = entry.first_sequence, entry.last_sequence
    run.save()


def _failed(run: StreamRun, error: str) -> None:
    run.status = StreamRun.Status.FAILED
    run.finished_at = timezone.now()
    run.error = error[:10_000]
    run.save(update_fields=["status", "finished_at", "error"])


def _run(stream: Stream, trigger: str, source: Source) -> StreamRun | None:
    if trigger not in StreamRun.Trigger.values or trigger == StreamRun.Trigger.PREVIEW:
        raise ValueError(f"not a run trigger: {trigger!r}")
    started = timezone.now()
    run = StreamRun.objects.create(
        account_id=stream.account_id,
        stream=stream,
        stream_cas=stream.cas,
        trigger=trigger,
        status=StreamRun.Status.RUNNING,
        started_at=started,
    )
    context = RunContext(account_id=stream.account_id, stream=stream, now=started, run=run)
    outcome = "unfinished"
    try:
        plan = plan_build(stream.nodes, stream.edges)
        with transaction.atomic():
            entry = source.read(plan, context)
            if entry is not None:
                context.source_position = (
                    f"batch:{entry.first_sequence}" if entry.first_sequence is not None else f"run:{run.pk}"
                )
                result = plan_execute(plan, context, inputs=entry.inputs, injected=entry.injected)
                source.commit(entry)
                _succeeded(run, result, entry)
        outcome = "done" if entry is not None else "empty"
    except (NodeFailed, PlanInvalid) as exc:
        _failed(run, str(exc))
        outcome = "failed"
    except SoftTimeLimitExceeded:
        # Celery's soft time limit for the task (STREAM_RUN_SOFT_TIME_LIMIT): the transaction
        # rolled back on the way out, so the batches wait for the retry after the backoff.
        _failed(run, TIME_LIMIT_ERROR)
        outcome = "failed"
    except DatabaseError as exc:
        # A deadlock, a serialization failure or a unique-key race with a concurrent run: the
        # transaction rolled back; a retry runs it again. (If the database is down, recording the
        # failure raises too, and the caller sees that.)
        _failed(run, f"database error: {exc.__class__.__name__}")
        outcome = "failed"
    finally:
        if outcome == "unfinished" and not transaction.get_connection().in_atomic_block:
            # An unexpected error (it propagates): say so on the run rather than leave it RUNNING.
            error = sys.exc_info()[1]
            try:
                _failed(run, f"unexpected error: {error.__class__.__name__}" if error else "unexpected error")
            except DatabaseError:
                logger.warning("stream run %s: could not record its failure", run.pk)
    if outcome == "empty":
        run.delete()
        return None
    if outcome == "failed":
        logger.warning("stream run %s of stream %s failed: %s", run.pk, stream.pk, run.error)
    return run


TIME_LIMIT_ERROR = (
    "time limit: the run took longer than its task's soft time limit (STREAM_RUN_SOFT_TIME_LIMIT) "
    "and was stopped; its effects were rolled back and it runs again after the backoff"
)
ABANDONED_ERROR = (
    "abandoned: the worker running it stopped (killed, out of memory or its machine lost); "
    "its effects were rolled back with its transaction and the run's task runs again"
)


def stream_runs_abandoned_fail(*, older_than_seconds: int | None = None) -> int:
    """Mark FAILED the runs still RUNNING long after they started: a worker that died mid-run
    (SIGKILL, OOM) never records the end of its run. Its transaction (effects and offset) rolled
    back, so there is nothing to undo; only the admin would go on showing it as running. A run that
    is merely slow and finishes afterwards records its real outcome over this one."""
    from django.conf import settings

    now = timezone.now()
    cutoff = now - timedelta(
        seconds=older_than_seconds
        if older_than_seconds is not None
        else settings.STREAM_RUN_ABANDONED_SECONDS
    )
    return StreamRun.objects.filter(status=StreamRun.Status.RUNNING, started_at__lt=cutoff).update(
        status=StreamRun.Status.FAILED, finished_at=now, error=ABANDONED_ERROR
    )


def stream_run_execute(
    *,
    stream_id: uuid.UUID | str,
    records: list[Any],
    trigger: str = StreamRun.Trigger.MANUAL,
    input_node_ids: Iterable[str] | None = None,
) -> StreamRun:
    """Run the stream over ``records`` (fed to its input nodes, or to ``input_node_ids``) and
    record the run. Returns the run, SUCCEEDED or FAILED (``error`` says why)."""
    stream = _stream(stream_id)
    if input_node_ids is not None:
        inputs = {node["id"] for node in stream.nodes if node.get("type") == "onlineCollector"}
        unknown = sorted(set(input_node_ids) - inputs)
        if unknown:
            raise ValidationFailed.for_field(
                "inputNodeIds", f"'{unknown[0]}' is not an input node of the stream."
            )
    run = _run(stream, trigger, RecordsSource(records, input_node_ids))
    assert run is not None  # records always make an entry
    return run


def stream_run_collected(
    *,
    stream_id: uuid.UUID | str,
    trigger: str = StreamRun.Trigger.REALTIME,
    batch_limit: int = COLLECTED_BATCHES_PER_RUN,
) -> StreamRun | None:
    """Run the stream over its collectors' next batches (``None`` when there are none: then
    nothing is written, not even a run)."""
    stream = _stream(stream_id)
    consumer = collection_seam.consumer_name(stream.pk)
    if not any(
        collection_seam.has_unread_batches(
            account_id=stream.account_id, collector_id=collector_id, consumer=consumer
        )
        for collector_id in sorted(collection_seam.stream_collector_ids(stream.nodes))
    ):
        return None
    if stream_run_retry_at(stream=stream) > timezone.now():
        return None  # backing off after failed runs: the catch-up sweep asks again (see below)
    return _run(stream, trigger, CollectedSource(stream, batch_limit))


# --- Backing off after failed runs -------------------------------------------------------------------
# A run fails as a whole only for what affects every record (the database, a stored configuration
# that cannot run, a parameter that is gone): bad records are rejected one by one and the run
# goes on. Such a failure does not go away in seconds, so a stream whose collected runs failed
# waits 5 s after the first failure, doubling to 5 minutes, before its next collected run — however
# often a new batch, the catch-up sweep or a task retry asks for one.

RUN_RETRY_BASE_SECONDS = 5
RUN_RETRY_MAX_SECONDS = 300
_COLLECTED_TRIGGERS = (StreamRun.Trigger.REALTIME, StreamRun.Trigger.SCHEDULE)


def stream_run_backoff_seconds(failures: int) -> int:
    """The wait after ``failures`` consecutive failed runs: 5 s, doubling, at most 5 minutes."""
    if failures <= 0:
        return 0
    return min(RUN_RETRY_MAX_SECONDS, RUN_RETRY_BASE_SECONDS * 2 ** (failures - 1))


def stream_run_failures(*, stream: Stream) -> tuple[int, datetime | None]:
    """Consecutive failed collected runs of the stream, latest first (counted up to the number
    that reaches the longest wait), and when the latest of them ended."""
    cap = (RUN_RETRY_MAX_SECONDS // RUN_RETRY_BASE_SECONDS).bit_length() + 1
    recent = (
        StreamRun.objects.filter(stream=stream, trigger__in=_COLLECTED_TRIGGERS)
        .exclude(status=StreamRun.Status.RUNNING)
        .order_by("-started_at")
        .values_list("status", "finished_at")[:cap]
    )
    failures, last_failed_at = 0, None
    for status, finished_at in recent:
        if status != StreamRun.Status.FAILED:
            break
        failures += 1
        last_failed_at = last_failed_at or finished_at
    return failures, last_failed_at


def stream_run_retry_at(*, stream: Stream) -> datetime:
    """When the stream's next collected run may start (the past when its last one did not fail)."""
    failures, last_failed_at = stream_run_failures(stream=stream)
    if not failures or last_failed_at is None:
        return datetime.min.replace(tzinfo=UTC)
    return last_failed_at + timedelta(seconds=stream_run_backoff_seconds(failures))


class FlushDeliverySource:
    """The next waiting flush deliveries of one Meter processor (``FlushDelivery``, the outbox
    its flushes wrote), in ``id`` order: their records enter the graph as the node's output and
    the rows are deleted in the run's transaction, so each is delivered once, or not at all if
    the run fails. Only the worker holding the queue's oldest row delivers (rows locked with
    ``SKIP LOCKED``; a worker that did not get the oldest one leaves the queue alone), so the
    records arrive in flush order; and nothing is delivered before the oldest row is due."""

    def __init__(self, stream: Stream, node_id: str, limit: int):
        self.stream = stream
        self.node_id = node_id
        self.limit = limit
        self.delivery_ids: list[int] = []

    def read(self, plan: StreamPlan, context: RunContext) -> Entry | None:
        queue = FlushDelivery.objects.filter(stream=self.stream, node_id=self.node_id)
        head = queue.order_by("id").values_list("id", "next_attempt_at").first()
        if head is None or head[1] > context.now:
            return None
        rows = list(
            queue.select_for_update(skip_locked=True)
            .order_by("id")
            .values_list("id", "records")[: self.limit]
        )
        if not rows or rows[0][0] != head[0]:
            return None  # another worker is delivering this queue
        self.delivery_ids = [delivery_id for delivery_id, _ in rows]
        if self.node_id not in plan.nodes:
            # The node was removed from the stream meanwhile: its records are delivered nowhere.
            return Entry()
        return Entry(injected={self.node_id: [record for _, records in rows for record in records]})

    def commit(self, entry: Entry) -> None:
        FlushDelivery.objects.filter(pk__in=self.delivery_ids).delete()


def flush_delivery_backoff_seconds(attempts: int) -> int:
    """5 s after the first failed attempt, doubling, at most 5 minutes."""
    return min(FLUSH_RETRY_MAX_SECONDS, FLUSH_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))


def stream_flush_deliver(
    *, stream_id: uuid.UUID | str, node_id: str, limit: int = FLUSH_DELIVERIES_PER_RUN
) -> StreamRun | None:
    """Deliver the oldest waiting flush deliveries of a Meter processor to its downstream nodes
    (a ``flush`` run). ``None`` when there is nothing due (or another worker is on it). A failed
    run leaves the deliveries waiting, with the error and the next attempt's time."""
    stream = _stream(stream_id)
    source = FlushDeliverySource(stream, node_id, limit)
    run = _run(stream, StreamRun.Trigger.FLUSH, source)
    if run is not None and run.status == StreamRun.Status.FAILED and source.delivery_ids:
        with transaction.atomic():
            for delivery in FlushDelivery.objects.select_for_update().filter(pk__in=source.delivery_ids):
                delivery.attempts += 1
                delivery.last_error = run.error[:2000]
                delivery.next_attempt_at = timezone.now() + timedelta(
                    seconds=flush_delivery_backoff_seconds(delivery.attempts)
                )
                delivery.save(update_fields=["attempts", "last_error", "next_attempt_at"])
    return run


@transaction.atomic
def flush_deliveries_retry_now(*, delivery_ids: Iterable[int], now: datetime | None = None) -> int:
    """Make waiting flush deliveries due now: the next sweep delivers them (admin action)."""
    return FlushDelivery.objects.filter(pk__in=list(delivery_ids)).update(
        next_attempt_at=now or timezone.now()
    )


def flush_deliveries_due(*, limit: int = SWEEP_MAX_NODES) -> list[tuple[str, str]]:
    """(stream id, node id) of the Meter processors with a flush delivery due now."""
    queues = (
        FlushDelivery.objects.filter(next_attempt_at__lte=timezone.now())
        .order_by()
        .values_list("stream_id", "node_id")
        .distinct()[:limit]
    )
    return sorted((str(stream_id), node_id) for stream_id, node_id in queues)


def flush_deliveries_sweep(*, max_runs_per_node: int = 10) -> int:
    """Deliver every due flush delivery (what an enqueue lost after its flush committed, and
    what waits for a retry): per Meter processor, runs until its queue is empty or a run
    fails. Returns the number of records delivered."""
    delivered = 0
    for stream_id, node_id in flush_deliveries_due():
        for _ in range(max_runs_per_node):
            try:
                run = stream_flush_deliver(stream_id=stream_id, node_id=node_id)
            except StreamNotFound:
                break
            if run is None or run.status == StreamRun.Status.FAILED:
                break
            delivered += run.records_in
    return delivered


# --- Session timeouts --------------------------------------------------------------------------------


@dataclass
class SweepResult:
    sessions_emitted: int = 0
    runs: list[StreamRun] = field(default_factory=list)


def session_timeouts_sweep(
    *, sessions_per_node: int = SWEEP_SESSIONS_PER_NODE, max_nodes: int = SWEEP_MAX_NODES
) -> SweepResult:
    """Emit every timed-out session downstream of its aggregator, once: one run (and one
    transaction) per aggregator node, at most ``sessions_per_node`` sessions each."""
    now = timezone.now()
    groups = list(
        AggregationSession.objects.filter(timeout_at__lte=now)
        .order_by()
        .values_list("stream_id", "node_id")
        .distinct()[:max_nodes]
    )
    result = SweepResult()
    for stream_id, node_id in sorted(groups, key=lambda group: (str(group[0]), group[1])):
        stream = Stream.objects.filter(pk=stream_id).first()
        if stream is None:
            continue
        run = _run(
            stream,
            StreamRun.Trigger.SESSION_TIMEOUT,
            TimedOutSessionsSource(stream, node_id, sessions_per_node),
        )
        if run is not None:
            result.runs.append(run)
            if run.status == StreamRun.Status.SUCCEEDED:
                result.sessions_emitted += run.records_in
    return result


@transaction.atomic
def aggregation_sessions_expire(*, session_ids: Iterable[uuid.UUID], now: datetime | None = None) -> int:
    """Let sessions time out now: the next sweep emits them (admin action)."""
    return AggregationSession.objects.filter(pk__in=list(session_ids)).update(
        timeout_at=now or timezone.now()
    )


def dedup_keys_purge() -> int:
    """Forget deduplication keys whose window has passed (one bounded batch)."""
    return dedup.keys_purge(now=timezone.now())


# --- Preview ---------------------------------------------------------------------------------------


def stream_preview(*, stream: Stream, records: list[Any], tag: str | None = None) -> RunResult:
    """Each node's output and rejections for ``records``, with NOTHING persisted: side-effecting
    nodes run dry (no dedup keys, sessions, inspected records, HTTP requests or metering), and the
    whole evaluation runs in a transaction that is rolled back regardless."""
    if not isinstance(records, list) or not 1 <= len(records) <= PREVIEW_MAX_RECORDS:
        raise ValidationFailed.for_field("records", f"Give 1 to {PREVIEW_MAX_RECORDS} records.")
    snapshot = stream_snapshot_for_tag(stream, tag)
    try:
        plan = plan_build(snapshot.nodes, snapshot.edges)
    except PlanInvalid as exc:
        raise ValidationFailed(f"The stream's configuration cannot run: {exc}", code="STREAM_NOT_RUNNABLE")
    context = RunContext(
        account_id=stream.account_id,
        stream=stream,
        now=timezone.now(),
        dry_run=True,
        script_deadline=time.monotonic() + cel_limits().preview_seconds,
    )
    with transaction.atomic():
        try:
            return plan_execute(plan, context, inputs={node_id: records for node_id in plan.input_node_ids()})
        except NodeFailed as exc:
            raise ValidationFailed(str(exc), code="PREVIEW_FAILED")
        finally:
            transaction.set_rollback(True)
