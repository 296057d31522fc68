"""The outputs' durable outbox: what an output node (``httpForwarder``) sends, and how.

Billing must never depend on a downstream system being up, so an output node does no network
I/O inside a run. It writes its records to the outbox (``OutputDelivery``, one row per request of
up to 500 records, the body encoded once) in the run's own transaction: a run that commits always
has its deliveries, one that rolls back has none, and a target that is down never fails, blocks
or re-runs the metering. After the commit a worker is woken (``streams.deliver_output``) and
sends them; a lost wake-up or a retry whose backoff has passed is picked up by the sweep (beat,
every 5 s).

One attempt is three short steps, none of them holding a transaction across the network:
1. claim (one transaction): lock the head of the output's queue — its oldest PENDING row —
   with ``SKIP LOCKED``, count the attempt and set a lease (the node's timeout plus a margin) as
   its ``next_attempt_at``, so no other worker takes it while the request is out;
2. send (no transaction): the body, with ``Delivery-Id`` (stable across attempts) and
   ``Delivery-Attempt`` headers, to the node's URL as configured at the time of the attempt,
   ``{{param:…}}`` resolved then (sensitive values decrypted in memory only);
3. complete (one statement, compare-and-set on the attempt number): DELIVERED (the body is
   emptied), or the next attempt after an exponential backoff with jitter, or DEAD after the
   last attempt.

Order: the rows of one output are sent one at a time in the order the runs wrote them; a row is
never sent before every older row of the same output was delivered or became a dead letter.
A dead letter steps aside so the queue goes on; "retry now" makes it the head again. Delivery
is at least once: a worker killed after sending, before recording it, leaves the row to be sent
again once its lease lapses, with the same ``Delivery-Id`` for the receiver to deduplicate.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from config.bound_sql import bound_cursor, bound_execute
from streams.engine import outbound
from streams.engine.context import NodeFailed, RunContext
from streams.engine.task_queue import DELIVER_OUTPUT, streams_task
from streams.models import OutputDelivery, Stream
from streams.nodes import PARAMETER_REFERENCE, HttpForwarderConfig, NodeConfigInvalid, node_config_parse

logger = logging.getLogger(__name__)

RECORDS_PER_REQUEST = 500
ATTEMPTS_PER_CALL = 50  # then the task queues itself again: one busy output never holds a worker long
HEADS_SKIPPED_PER_CLAIM = 20
PURGE_BATCH = 5000
DELIVERY_ID_HEADER = "Delivery-Id"
DELIVERY_ATTEMPT_HEADER = "Delivery-Attempt"
INTERRUPTED = "The last attempt was interrupted: its worker stopped before it finished."
NODE_GONE = "The output node is no longer in the stream's configuration."


# --- Writing (inside the run) ------------------------------------------------------------------


def output_records_queue(*, context: RunContext, node_id: str, records: list[Any]) -> int:
    """Queue ``records`` for the output node ``node_id``, in the caller's (the run's) transaction,
    ``RECORDS_PER_REQUEST`` per delivery; once it commits a worker is asked to send them. Returns
    the number of deliveries written."""
    if not records:
        return 0
    rows = [
        OutputDelivery(
            account_id=context.stream.account_id,
            stream_id=context.stream.pk,
            node_id=node_id,
            run=context.run,
            body=msgspec.json.encode(records[start : start + RECORDS_PER_REQUEST]).decode(),
            record_count=len(records[start : start + RECORDS_PER_REQUEST]),
            created_at=context.now,
            next_attempt_at=context.now,
            max_attempts=settings.STREAM_OUTPUT_MAX_ATTEMPTS,
        )
        for start in range(0, len(records), RECORDS_PER_REQUEST)
    ]
    _outbox_insert(rows)
    stream_id = str(context.stream.pk)
    transaction.on_commit(lambda: output_wake(stream_id, node_id))
    return len(rows)


# The rows of one run's output in one statement, the bodies bound server-side (``config.bound_sql``):
# Django's bulk_create binds them client-side, quoting every character of every body in Python,
# which cost a fifth of a run's time beside a forwarder (bench/stream_pipeline.py, py-spy).
_OUTBOX_INSERT = """
    INSERT INTO streams_outputdelivery (delivery_id, account_id, stream_id, node_id, run_id, status, body,
        record_count, created_at, next_attempt_at, attempts, max_attempts, last_error)
    SELECT d.delivery_id, %(account)s, %(stream)s, %(node)s, %(run)s, %(status)s, d.body, d.record_count,
           %(now)s, %(now)s, 0, %(max_attempts)s, ''
    FROM unnest(%(ids)b::uuid[], %(bodies)b::text[], %(counts)b::int[]) WITH ORDINALITY
         AS d(delivery_id, body, record_count, position)
    ORDER BY d.position
"""


def _outbox_insert(rows: list[OutputDelivery]) -> None:
    if connection.vendor != "postgresql":
        OutputDelivery.objects.bulk_create(rows)
        return
    first = rows[0]
    params = {
        "account": first.account_id,
        "stream": first.stream_id,
        "node": first.node_id,
        "run": first.run_id,
        "status": OutputDelivery.Status.PENDING,
        "now": first.created_at,
        "max_attempts": first.max_attempts,
        "ids": [row.delivery_id for row in rows],
        "bodies": [row.body for row in rows],
        "counts": [row.record_count for row in rows],
    }
    bound_execute(bound_cursor(), _OUTBOX_INSERT, params)


def output_wake(stream_id: str, node_id: str, countdown: float | None = None) -> None:
    """Ask a worker to send the output's due deliveries (now, or after ``countdown`` seconds). A
    broker that is down is only logged: the sweep sends them."""
    from kombu.exceptions import OperationalError as BrokerError

    try:
        streams_task(DELIVER_OUTPUT).apply_async((stream_id, node_id), countdown=countdown)
    except BrokerError as exc:
        logger.warning(
            "streams: could not enqueue the delivery of %s/%s: %s; the sweep will", stream_id, node_id, exc
        )


# --- Sending (after the commit, by a worker) ------------------------------------------------------


def backoff_seconds(*, attempt_number: int, retry_after: float | None = None) -> float:
    """The wait after failed attempt ``n``: ``c = min(max, base · 2^(n-1))``, then a random point
    in ``[c/2, c]`` (jitter, so outputs that failed together do not retry together); a receiver's
    ``Retry-After`` is a floor (capped at the maximum)."""
    ceiling = min(
        settings.STREAM_OUTPUT_BACKOFF_MAX_SECONDS,
        settings.STREAM_OUTPUT_BACKOFF_BASE_SECONDS * 2 ** max(0, attempt_number - 1),
    )
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not a secret
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.STREAM_OUTPUT_BACKOFF_MAX_SECONDS))
    return delay


def _forwarder_config(stream: Stream, node_id: str) -> HttpForwarderConfig | None:
    """The node's configuration now (a URL fixed since the run applies to its waiting deliveries);
    ``None`` when the stream has no such output node any more."""
    for node in stream.nodes:
        if node.get("id") == node_id and node.get("type") == "httpForwarder":
            try:
                config = node_config_parse("httpForwarder", node.get("config") or {})
            except NodeConfigInvalid:
                return None  # stored configurations are validated on import; never trusted blindly
            return config if isinstance(config, HttpForwarderConfig) else None
    return None


@dataclass(frozen=True)
class _Claim:
    pk: int
    delivery_id: uuid.UUID
    number: int
    max_attempts: int
    record_count: int
    body: str


@dataclass(frozen=True)
class _Head:
    """What the claim found: a claim, or why there is none (``due_at``: the head waits till then)."""

    claim: _Claim | None = None
    due_at: datetime | None = None


def _claim_head(stream: Stream, node_id: str, config: HttpForwarderConfig | None, now: datetime) -> _Head:
    queue = OutputDelivery.objects.filter(
        stream=stream, node_id=node_id, status=OutputDelivery.Status.PENDING
    )
    with transaction.atomic():
        for _ in range(HEADS_SKIPPED_PER_CLAIM):
            head = queue.order_by("id").values_list("id", "next_attempt_at").first()
            if head is None:
                return _Head()
            if head[1] > now:
                return _Head(due_at=head[1])  # waiting for its retry, or in flight elsewhere
            row = (
                queue.select_for_update(skip_locked=True)
                .filter(pk=head[0], next_attempt_at__lte=now)
                .only("id", "delivery_id", "attempts", "max_attempts", "record_count", "body")
                .first()
            )
            if row is None:
                return _Head()  # another worker is claiming it
            if config is None or row.attempts >= row.max_attempts:
                # No node to send it with, or every attempt used (the last by a worker that died).
                queue.filter(pk=row.pk).update(
                    status=OutputDelivery.Status.DEAD,
                    next_attempt_at=None,
                    last_error=NODE_GONE if config is None else INTERRUPTED,
                )
                continue
            number = row.attempts + 1
            lease = config.timeout_seconds + settings.STREAM_OUTPUT_LEASE_MARGIN_SECONDS
            queue.filter(pk=row.pk).update(
                attempts=number,
                next_attempt_at=now + timedelta(seconds=lease),
                last_attempt_at=now,
                last_error=OutputDelivery.IN_FLIGHT,
            )
            return _Head(
                claim=_Claim(
                    pk=row.pk,
                    delivery_id=row.delivery_id,
                    number=number,
                    max_attempts=row.max_attempts,
                    record_count=row.record_count,
                    body=row.body,
                )
            )
    return _Head()


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str = ""
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return not self.error


def _send(stream: Stream, node_id: str, config: HttpForwarderConfig, claim: _Claim) -> _Outcome:
    """The attempt's request, outside any transaction. Errors quote the configured URL (with its
    ``{{param:…}}`` references), never the resolved one."""
    context = RunContext(account_id=stream.account_id, stream=stream, now=timezone.now())

    def substitute(text: str) -> str:
        return PARAMETER_REFERENCE.sub(lambda match: context.parameter(node_id, match.group(1)), text)

    try:
        url = substitute(config.url)
        headers = {name: substitute(value) for name, value in config.headers.items()}
    except NodeFailed as exc:
        return _Outcome(status_code=None, error=exc.message)
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    headers[DELIVERY_ID_HEADER] = str(claim.delivery_id)
    headers[DELIVERY_ATTEMPT_HEADER] = str(claim.number)
    try:
        status = outbound.send(
            method=config.method,
            url=url,
            headers=headers,
            body=claim.body.encode(),
            timeout_seconds=config.timeout_seconds,
        )
    except outbound.OutboundError as exc:
        return _Outcome(
            status_code=exc.status_code,
            error=f"{config.method} {config.url}: {exc}",
            retry_after=exc.retry_after,
        )
    return _Outcome(status_code=status)


def _complete(claim: _Claim, outcome: _Outcome) -> datetime | None:
    """Record the attempt's outcome; return when the next attempt is due (``None``: final)."""
    now = timezone.now()
    update: dict[str, Any] = {"last_status_code": outcome.status_code, "last_error": outcome.error[:2000]}
    next_attempt_at = None
    if outcome.succeeded:
        update.update(status=OutputDelivery.Status.DELIVERED, body="", delivered_at=now, next_attempt_at=None)
    elif claim.number >= claim.max_attempts:
        update.update(status=OutputDelivery.Status.DEAD, next_attempt_at=None)
    else:
        delay = backoff_seconds(attempt_number=claim.number, retry_after=outcome.retry_after)
        next_attempt_at = now + timedelta(seconds=delay)
        update.update(next_attempt_at=next_attempt_at)
    # Compare-and-set: only the holder of this attempt moves the delivery on (a worker whose lease
    # lapsed while it was still sending finds the row taken by the next attempt and changes nothing).
    OutputDelivery.objects.filter(
        pk=claim.pk, status=OutputDelivery.Status.PENDING, attempts=claim.number
    ).update(**update)
    return next_attempt_at


@dataclass
class DeliverResult:
    """``delivered``: records delivered; ``retry_at``: the head failed (or waits) until then;
    ``more``: the call stopped at its limit with deliveries still due."""

    delivered: int = 0
    attempts: int = 0
    failed: int = 0
    retry_at: datetime | None = None
    more: bool = False


def output_deliveries_send(
    *, stream_id: uuid.UUID | str, node_id: str, limit: int = ATTEMPTS_PER_CALL
) -> DeliverResult:
    """Send the output's due deliveries, oldest first, one at a time, until its queue is empty,
    its head waits (a failed attempt's backoff, or another worker's attempt in flight), or
    ``limit`` attempts were made. Safe to run twice or concurrently: each attempt is claimed."""
    result = DeliverResult()
    stream = Stream.objects.filter(pk=stream_id).first()
    if stream is None:
        return result
    config = _forwarder_config(stream, node_id)
    for _ in range(limit):
        head = _claim_head(stream, node_id, config, timezone.now())
        if head.claim is None:
            result.retry_at = head.due_at
            return result
        assert config is not None  # a claim is only made with the node's configuration
        outcome = _send(stream, node_id, config, head.claim)
        next_attempt_at = _complete(head.claim, outcome)
        result.attempts += 1
        if outcome.succeeded:
            result.delivered += head.claim.record_count
            continue
        result.failed += 1
        logger.info(
            "stream %s output %s: delivery %s attempt %d failed: %s",
            stream.pk,
            node_id,
            head.claim.delivery_id,
            head.claim.number,
            outcome.error,
        )
        if next_attempt_at is not None:
            result.retry_at = next_attempt_at
            return result
        # A dead letter steps aside: the queue goes on with the next delivery.
    result.more = True
    return result


def output_queues_due(*, limit: int = 1000) -> list[tuple[str, str]]:
    """(stream id, node id) of the outputs whose head delivery is due now (the sweep's work)."""
    queues = (
        OutputDelivery.objects.filter(
            status=OutputDelivery.Status.PENDING, next_attempt_at__lte=timezone.now()
        )
        .order_by()
        .values_list("stream_id", "node_id")
        .distinct()[:limit]
    )
    return sorted((str(stream_id), node_id) for stream_id, node_id in queues)


@transaction.atomic
def output_deliveries_retry_now(*, delivery_ids: Iterable[int], now: datetime | None = None) -> int:
    """Make deliveries due now (admin action): a dead letter gets a fresh series of attempts and is
    PENDING again; a PENDING one waiting for its backoff is due at once. One in flight is left
    alone. Each output concerned is woken after the commit. Returns how many were changed."""
    now = now or timezone.now()
    ids = list(delivery_ids)
    chosen = OutputDelivery.objects.filter(pk__in=ids)
    queues = set(chosen.exclude(status=OutputDelivery.Status.DELIVERED).values_list("stream_id", "node_id"))
    changed = 0
    for delivery in chosen.filter(status=OutputDelivery.Status.DEAD).select_for_update():
        changed += OutputDelivery.objects.filter(pk=delivery.pk, status=OutputDelivery.Status.DEAD).update(
            status=OutputDelivery.Status.PENDING,
            next_attempt_at=now,
            max_attempts=delivery.attempts + settings.STREAM_OUTPUT_MAX_ATTEMPTS,
        )
    changed += (
        chosen.filter(status=OutputDelivery.Status.PENDING, next_attempt_at__gt=now)
        .exclude(last_error=OutputDelivery.IN_FLIGHT)
        .update(next_attempt_at=now)
    )
    for stream_id, node_id in sorted(queues, key=lambda queue: (str(queue[0]), queue[1])):
        transaction.on_commit(lambda s=str(stream_id), n=node_id: output_wake(s, n))
    return changed


def output_deliveries_purge(*, now: datetime | None = None, batch: int = PURGE_BATCH) -> int:
    """Delete delivered rows older than ``STREAM_OUTPUT_DELIVERED_RETENTION_HOURS`` (one bounded batch)."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.STREAM_OUTPUT_DELIVERED_RETENTION_HOURS)
    ids = list(
        OutputDelivery.objects.filter(status=OutputDelivery.Status.DELIVERED, delivered_at__lt=cutoff)
        .order_by("delivered_at")
        .values_list("pk", flat=True)[:batch]
    )
    return OutputDelivery.objects.filter(pk__in=ids).delete()[0]
