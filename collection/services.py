"""Every write of the collection app: collectors, the batch log, consumer offsets and pruning."""

from __future__ import annotations

import functools
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.models import Count, F, Q, Sum
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from accounts.models import Account
from collection.exceptions import (
    CollectorLimitReached,
    CollectorNameExists,
    CollectorNotActive,
    CollectorNotFound,
    ConsumerNotRegistered,
    OffsetConflict,
)
from collection.models import NAME_PATTERN, CollectedBatch, Collector, ConsumerOffset
from collection.selectors import (
    active_collectors,
    collector_account_and_status,
    collector_lock_key,
    log_watermark,
)
from config.api.errors import ApiError, IdempotencyKeyInUse, IdempotencyKeyReused, NotFound, ValidationFailed
from config.hot.statements import execute_prepared

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(NAME_PATTERN)
PURGE_CHUNK_SIZE = 5_000
PRUNE_CHUNK_SIZE = 10_000


# --- collectors ------------------------------------------------------------------------------


def _validated_name(name: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 80:
        raise ValidationFailed.for_field("name", "name must be 1 to 80 characters.")
    if not _NAME_RE.match(name):
        raise ValidationFailed.for_field(
            "name", "name may contain only letters, digits, spaces and the characters - _ . ( )."
        )
    return name


def _enqueue(task_name: str, *args: str) -> None:
    """Send a task after commit. A broker outage is logged, not raised: the beat sweep catches up."""
    from kombu.exceptions import OperationalError as BrokerError

    from collection import tasks

    try:
        getattr(tasks, task_name).delay(*args)
    except BrokerError as exc:
        logger.warning(
            "collection: could not enqueue %s(%s): %s; the sweep will run it", task_name, args, exc
        )


def collector_validate(*, account_id: uuid.UUID, name: str, collector: Collector | None = None) -> str:
    """Check a new collector (``collector=None``) or a rename: the name's format, that it is free
    in the account, and for a new one the per-account limit. Reads only; returns the name."""
    name = _validated_name(name)
    live = Collector.objects.filter(account_id=account_id).exclude(status=Collector.Status.DELETING)
    if collector is None and live.count() >= settings.COLLECTION_MAX_COLLECTORS:
        raise CollectorLimitReached(
            f"The account already has the maximum of {settings.COLLECTION_MAX_COLLECTORS} collectors."
        )
    taken = live.filter(name=name)
    if collector is not None:
        taken = taken.exclude(pk=collector.pk)
    if taken.exists():
        raise CollectorNameExists(
            details=[{"field": "name", "message": "Already used by another collector."}]
        )
    return name


@transaction.atomic
def collector_create(*, account_id: uuid.UUID, name: str) -> Collector:
    """Create a collector in CREATING; a task provisions it to ACTIVE after commit."""
    # Serialise collector creation per account, so the limit check and the insert cannot
    # interleave with another request's (the limit holds under concurrency). NO KEY UPDATE does
    # not block the foreign-key checks of send-data inserts on the account row meanwhile.
    locked = Account.objects.select_for_update(no_key=True).filter(pk=account_id)
    if locked.values_list("pk", flat=True).first() is None:
        raise NotFound("Account not found.", code="ACCOUNT_NOT_FOUND")
    name = collector_validate(account_id=account_id, name=name)
    try:
        with transaction.atomic():
            collector = Collector.objects.create(account_id=account_id, name=name)
    except IntegrityError:  # a concurrent rename took the name
        raise CollectorNameExists(
            details=[{"field": "name", "message": "Already used by another collector."}]
        )
    collector_id = str(collector.pk)
    transaction.on_commit(lambda: _enqueue("collector_provision", collector_id))
    return collector


@transaction.atomic
def collector_update(*, collector: Collector, name: str) -> Collector:
    """Rename a collector (the only field that can change); the name stays unique in the account."""
    name = collector_validate(account_id=collector.account_id, name=name, collector=collector)
    if name == collector.name:
        return collector
    collector.name = name
    try:
        with transaction.atomic():
            collector.save(update_fields=["name", "updated_at"])
    except IntegrityError:
        raise CollectorNameExists(
            details=[{"field": "name", "message": "Already used by another collector."}]
        )
    return collector


@transaction.atomic
def collector_delete(*, collector: Collector) -> int:
    """Stop accepting data at once (status DELETING) and purge the log in a task. Returns 1 or 0."""
    marked = (
        Collector.objects.filter(pk=collector.pk)
        .exclude(status=Collector.Status.DELETING)
        .update(status=Collector.Status.DELETING, updated_at=timezone.now())
    )
    active_collectors.forget(collector.pk)  # this process at once; others within the cache time
    if marked:
        collector.status = Collector.Status.DELETING
        collector_id = str(collector.pk)
        transaction.on_commit(lambda: _enqueue("collector_purge", collector_id))
    return marked


@transaction.atomic
def collector_provision(*, collector_id: uuid.UUID | str) -> bool:
    """CREATING → ACTIVE. The batch log is a shared table, so the collector's storage is ready once
    its row exists and its status says so. A second run (or a run for another status) changes nothing."""
    return bool(
        Collector.objects.filter(pk=collector_id, status=Collector.Status.CREATING).update(
            status=Collector.Status.ACTIVE, updated_at=timezone.now()
        )
    )


def collector_purge(
    *, collector_id: uuid.UUID | str, chunk_size: int = PURGE_CHUNK_SIZE, max_chunks: int = 200
) -> bool:
    """Delete a DELETING collector's batches in bounded chunks, then the collector and its offsets.

    Returns True once the collector is gone (or was never there), False if batches remain after
    ``max_chunks`` chunks (the caller runs it again). Safe to run twice or concurrently.
    """
    if not Collector.objects.filter(pk=collector_id, status=Collector.Status.DELETING).exists():
        return not Collector.objects.filter(pk=collector_id).exists()
    for _ in range(max_chunks):
        with transaction.atomic():
            pks = list(
                CollectedBatch.objects.filter(collector_id=collector_id)
                .order_by("sequence")
                .values_list("pk", flat=True)[:chunk_size]
            )
            if not pks:
                break
            CollectedBatch.objects.filter(pk__in=pks).delete()
    else:
        return False
    active_collectors.forget(uuid.UUID(str(collector_id)))
    try:
        with transaction.atomic():
            collector = (
                Collector.objects.select_for_update()
                .filter(pk=collector_id, status=Collector.Status.DELETING)
                .first()
            )
            if collector is None:
                return True
            if CollectedBatch.objects.filter(collector_id=collector_id).exists():
                return False  # a web process that still had it cached as ACTIVE slipped one in
            collector.delete()
    except IntegrityError:
        return False  # the same, committed while this ran: the foreign key kept the collector
    return True


def collectors_sweep(*, stale_after_seconds: int = 30, limit: int = 100) -> dict[str, int]:
    """Catch up on tasks whose enqueue was lost (broker down): provision stale CREATING
    collectors and purge DELETING ones. Run by beat every minute."""
    stale = timezone.now() - timedelta(seconds=stale_after_seconds)
    creating = list(
        Collector.objects.filter(status=Collector.Status.CREATING, updated_at__lt=stale)
        .order_by("updated_at")
        .values_list("pk", flat=True)[:limit]
    )
    provisioned = sum(collector_provision(collector_id=pk) for pk in creating)
    deleting = list(
        Collector.objects.filter(status=Collector.Status.DELETING, updated_at__lt=stale)
        .order_by("updated_at")
        .values_list("pk", flat=True)[:limit]
    )
    purged = sum(collector_purge(collector_id=pk) for pk in deleting)
    return {"provisioned": provisioned, "purged": purged}


# --- the batch log ---------------------------------------------------------------------------


# Called with the collector id after a new batch is stored, once the batch is committed (readers
# such as realtime streams enqueue their runs). Registered by the reading apps in their
# AppConfig.ready(); collection never imports them. A failing hook is logged, never raised: the
# readers' catch-up sweeps pick the batch up.
BATCH_STORED_HOOKS: list = []


def batch_stored_hook_register(hook) -> None:
    if hook not in BATCH_STORED_HOOKS:
        BATCH_STORED_HOOKS.append(hook)


def batch_stored(collector_id: uuid.UUID) -> None:
    """Tell the readers (``BATCH_STORED_HOOKS``) that a batch of the collector committed."""
    for hook in list(BATCH_STORED_HOOKS):
        try:
            hook(collector_id)
        except Exception:
            logger.exception("collection: batch-stored hook %r failed for collector %s", hook, collector_id)


@dataclass(frozen=True)
class AppendResult:
    ingestion_id: uuid.UUID
    replayed: bool


@functools.lru_cache(maxsize=64)
def append_sql(rows: int, placeholder: str = "$") -> str:
    """The append of ``rows`` batches as one statement, nine parameters per row in the order
    ingestion id, account, collector, payload, size, idempotency key, received at (NULL: now),
    collector lock class and object. ``placeholder`` "$" numbers them for libpq's prepared
    statements, "%s" is psycopg's.

    Each row's collector advisory lock is taken shared (``barrier``) before any row's sequence is
    drawn, and held until commit: see models.py. Several rows take their locks in a fixed order,
    so two statements never wait for each other; one row (the WSGI request path) needs neither the
    ordering nor the VALUES list, which cost it ~6 % under pgbench. Rows whose idempotency key is
    taken are skipped.
    """
    kinds = ("uuid", "uuid", "uuid", "text", "integer", "varchar", "timestamptz", "integer", "integer")
    rows_values = [
        [f"{'%s' if placeholder == '%s' else f'${9 * row + n + 1}'}::{kind}" for n, kind in enumerate(kinds)]
        for row in range(rows)
    ]
    insert = """INSERT INTO collection_collectedbatch
    (ingestion_id, account_id, collector_id, payload, size_bytes, idempotency_key, received_at)"""
    skip_taken_keys = "ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
    if rows == 1:
        ((key, account, collector, payload, size, idempotency_key, received, lock_class, lock_object),) = (
            rows_values
        )
        return f"""
{insert}
SELECT {key}, {account}, {collector}, {payload}, {size}, {idempotency_key}, COALESCE({received}, now())
FROM (SELECT pg_advisory_xact_lock_shared({lock_class}, {lock_object})) AS barrier
{skip_taken_keys}
"""  # noqa: S608
    values = ", ".join("(" + ", ".join(row) + ")" for row in rows_values)
    return f"""
WITH batch (ingestion_id, account_id, collector_id, payload, size_bytes, idempotency_key, received_at,
            lock_class, lock_object) AS (VALUES {values}),
barrier AS MATERIALIZED (
    SELECT count(pg_advisory_xact_lock_shared(locks.lock_class, locks.lock_object)) AS taken
    FROM (SELECT DISTINCT lock_class, lock_object FROM batch ORDER BY lock_class, lock_object) AS locks
)
{insert}
SELECT batch.ingestion_id, batch.account_id, batch.collector_id, batch.payload, batch.size_bytes,
       batch.idempotency_key, COALESCE(batch.received_at, now())
FROM batch, barrier
{skip_taken_keys}
"""  # noqa: S608


# SQLite serialises writers and needs no barrier.
_INSERT_SQL_OTHER = """
INSERT INTO collection_collectedbatch
    (ingestion_id, account_id, collector_id, payload, size_bytes, idempotency_key, received_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
"""
_APPEND_STATEMENT = b"collection_batch_append"


def collected_batch_append(
    *,
    account_id: uuid.UUID,
    collector_id: uuid.UUID,
    payload: str | bytes,
    size_bytes: int | None = None,
    idempotency_key: str | None = None,
    received_at: datetime | None = None,
) -> AppendResult:
    """The send-data hot path: check the collector (the caller's, ACTIVE; cached in-process) and
    store the batch with one INSERT.

    ``payload`` is the JSON text of the request's ``data`` value, already validated; it is stored
    as received (``size_bytes`` is its UTF-8 length, computed when not given). With an
    ``idempotency_key`` a replay returns the first ingestion id and stores nothing, even once the
    collector stopped taking data; the same key with a different body (or collector) is 409
    IDEMPOTENCY_KEY_REUSED. In autocommit (the request path) the batch is durable when this returns.
    """
    if isinstance(payload, bytes):
        size_bytes, payload = len(payload), payload.decode("utf-8")
    elif size_bytes is None:
        size_bytes = len(payload.encode("utf-8"))
    if active_collectors.get(collector_id) != account_id:
        problem = _collector_problem(account_id=account_id, collector_id=collector_id)
        if problem is not None:
            replay = _find_replay(
                account_id=account_id,
                collector_id=collector_id,
                payload=payload,
                idempotency_key=idempotency_key,
            )
            if replay is not None:
                return replay
            raise problem
    ingestion_id = uuid.uuid4()
    db = connections[DEFAULT_DB_ALIAS]
    try:
        if db.vendor == "postgresql":
            lock_class, lock_object = collector_lock_key(collector_id)
            params: list[str | int | None] = [
                str(ingestion_id),
                str(account_id),
                str(collector_id),
                payload,
                size_bytes,
                idempotency_key,
                received_at.isoformat() if received_at else None,
                lock_class,
                lock_object,
            ]
            inserted = execute_prepared(
                db, name=_APPEND_STATEMENT, numbered_sql=append_sql(1), sql=append_sql(1, "%s"), params=params
            )
        else:
            received = received_at or timezone.now()
            params = [
                ingestion_id.hex,
                account_id.hex,
                collector_id.hex,
                payload,
                size_bytes,
                idempotency_key,
                CollectedBatch._meta.get_field("received_at").get_db_prep_value(received, db),
            ]
            with db.cursor() as cursor:
                cursor.execute(_INSERT_SQL_OTHER, params)
                inserted = cursor.rowcount
    except IntegrityError:
        # The foreign key refused it: the collector was purged after it was cached as ACTIVE.
        active_collectors.forget(collector_id)
        raise CollectorNotFound()
    if inserted == 1:
        if BATCH_STORED_HOOKS:
            transaction.on_commit(lambda: batch_stored(collector_id), using=DEFAULT_DB_ALIAS)
        return AppendResult(ingestion_id=ingestion_id, replayed=False)
    # Nothing inserted: the idempotency key is taken.
    replay = _find_replay(
        account_id=account_id, collector_id=collector_id, payload=payload, idempotency_key=idempotency_key
    )
    if replay is None:
        raise IdempotencyKeyInUse()  # its first request's batch vanished in between; retry
    return replay


def _collector_problem(*, account_id: uuid.UUID, collector_id: uuid.UUID) -> ApiError | None:
    """Why the collector cannot take the caller's data, or None (and it is cached as ACTIVE)."""
    found = collector_account_and_status(collector_id=collector_id)
    if found is None or found[0] != account_id or found[1] == Collector.Status.DELETING:
        return CollectorNotFound()
    if found[1] != Collector.Status.ACTIVE:
        return CollectorNotActive(f"The collector's status is {found[1]}; it accepts data once ACTIVE.")
    active_collectors.put(collector_id, account_id)
    return None


def _find_replay(
    *, account_id: uuid.UUID, collector_id: uuid.UUID, payload: str, idempotency_key: str | None
) -> AppendResult | None:
    """The first answer when this request repeats an earlier one with the same key, None when the
    key is unused, 409 IDEMPOTENCY_KEY_REUSED when it was used for another request."""
    if idempotency_key is None:
        return None
    first = (
        CollectedBatch.objects.filter(account_id=account_id, idempotency_key=idempotency_key)
        .values("ingestion_id", "collector_id", "payload")
        .first()
    )
    if first is None:
        return None
    if first["collector_id"] == collector_id and _same_json(first["payload"], payload):
        return AppendResult(ingestion_id=first["ingestion_id"], replayed=True)
    raise IdempotencyKeyReused(
        details=[{"field": "Idempotency-Key", "message": "Already used with a different request."}]
    )


def _same_json(stored: str, received: str) -> bool:
    if stored == received:
        return True
    try:
        return msgspec.json.decode(stored) == msgspec.json.decode(received)
    except (msgspec.DecodeError, RecursionError):
        return False


# --- consumers and offsets -------------------------------------------------------------------


def _collector_of_account(*, account_id: uuid.UUID | str, collector_id: uuid.UUID | str) -> Collector:
    """The account's live collector with this id; another account's, or one being deleted, is
    CollectorNotFound exactly like an id that does not exist (a reference never crosses accounts)."""
    collector = (
        Collector.objects.filter(pk=collector_id, account_id=account_id)
        .exclude(status=Collector.Status.DELETING)
        .first()
    )
    if collector is None:
        raise CollectorNotFound()
    return collector


@transaction.atomic
def consumer_register(
    *, account_id: uuid.UUID | str, collector_id: uuid.UUID | str, consumer: str, start: str = "earliest"
) -> ConsumerOffset:
    """Register a reader of one of the account's collector logs. ``start="earliest"`` reads every
    retained batch, ``"latest"`` only batches stored after registration. Registering again
    changes nothing. A collector of another account is CollectorNotFound, as an unknown id is:
    a reader never reads, nor holds back the pruning of, another account's log."""
    if start not in ("earliest", "latest"):
        raise ValidationFailed.for_field("start", "start must be earliest or latest.")
    if not consumer or len(consumer) > 200:
        raise ValidationFailed.for_field("consumer", "consumer must be 1 to 200 characters.")
    collector = _collector_of_account(account_id=account_id, collector_id=collector_id)
    existing = ConsumerOffset.objects.filter(collector=collector, consumer=consumer).first()
    if existing is not None:
        return existing
    sequence = log_watermark(collector_id=collector.pk) if start == "latest" else 0
    try:
        with transaction.atomic():
            return ConsumerOffset.objects.create(
                collector=collector, consumer=consumer, last_sequence=sequence
            )
    except IntegrityError:  # registered concurrently
        return ConsumerOffset.objects.get(collector=collector, consumer=consumer)


@transaction.atomic
def consumer_unregister(*, account_id: uuid.UUID | str, collector_id: uuid.UUID | str, consumer: str) -> bool:
    """Forget a reader of one of the account's collectors; pruning stops waiting for it."""
    deleted, _ = ConsumerOffset.objects.filter(
        collector_id=collector_id, collector__account_id=account_id, consumer=consumer
    ).delete()
    return bool(deleted)


def consumer_offset_advance(
    *, account_id: uuid.UUID | str, collector_id: uuid.UUID | str, consumer: str, sequence: int
) -> int:
    """Move a consumer past the batch ``sequence`` of one of the account's collectors, inside the
    CALLER's transaction, so the offset commits or rolls back together with the effects of
    processing the batches.

    Offsets only move forward: a sequence at or behind the current offset raises OffsetConflict
    (another run consumed these batches), which rolls the caller's effects back with it.
    """
    if not transaction.get_connection().in_atomic_block:
        raise TransactionManagementError("consumer_offset_advance must run inside the caller's transaction.")
    if not CollectedBatch.objects.filter(
        collector_id=collector_id, account_id=account_id, sequence=sequence
    ).exists():
        raise NotFound(f"Batch {sequence} is not in this collector's log.", code="BATCH_NOT_FOUND")
    offsets = ConsumerOffset.objects.filter(
        collector_id=collector_id, collector__account_id=account_id, consumer=consumer
    )
    moved = offsets.filter(last_sequence__lt=sequence).update(
        last_sequence=sequence, updated_at=timezone.now()
    )
    if not moved:
        if not offsets.exists():
            raise ConsumerNotRegistered()
        raise OffsetConflict()
    return sequence


# --- pruning ---------------------------------------------------------------------------------


def collected_batches_prune(
    *, now: datetime | None = None, chunk_size: int = PRUNE_CHUNK_SIZE, max_chunks: int = 100
) -> int:
    """Delete batches older than COLLECTION_RETENTION_HOURS that every registered consumer of
    their collector has passed. A batch with an Idempotency-Key is also kept for the idempotency
    window, so a late replay is still recognised. Deleted counts move to the collector's lifetime
    totals. Returns how many batches were deleted (at most ``chunk_size * max_chunks``)."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.COLLECTION_RETENTION_HOURS)
    key_cutoff = now - timedelta(days=settings.COLLECTION_IDEMPOTENCY_DAYS)
    deleted = 0
    chunks = 0
    collector_ids = list(Collector.objects.order_by("pk").values_list("pk", flat=True))
    for collector_id in collector_ids:
        prunable = CollectedBatch.objects.filter(collector_id=collector_id, received_at__lt=cutoff).filter(
            Q(idempotency_key__isnull=True) | Q(received_at__lt=key_cutoff)
        )
        slowest = (
            ConsumerOffset.objects.filter(collector_id=collector_id)
            .order_by("last_sequence")
            .values_list("last_sequence", flat=True)
            .first()
        )
        if slowest is not None:
            prunable = prunable.filter(sequence__lte=slowest)
        while chunks < max_chunks:
            chunks += 1
            with transaction.atomic():
                pks = list(prunable.order_by("sequence").values_list("pk", flat=True)[:chunk_size])
                if not pks:
                    break
                chunk = CollectedBatch.objects.filter(pk__in=pks)
                totals = chunk.aggregate(batches=Count("pk"), size=Sum("size_bytes"))
                chunk.delete()
                Collector.objects.filter(pk=collector_id).update(
                    pruned_batches=F("pruned_batches") + totals["batches"],
                    pruned_bytes=F("pruned_bytes") + (totals["size"] or 0),
                )
                deleted += totals["batches"]
        if chunks >= max_chunks:
            break
    return deleted
