"""Reads of the collection app: the batch log in consumer order, and collector statistics."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Func, IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import TruncMinute

from collection.exceptions import ConsumerNotRegistered
from collection.models import CollectedBatch, Collector, ConsumerOffset
from config.ttlcache import TtlCache

# collector id → account id of collectors known to be ACTIVE, per process, for
# COLLECTION_COLLECTOR_CACHE_SECONDS. Spares send data a query per request; a collector deleted in
# another process stops taking data within that time (the foreign key refuses data for a
# collector that is gone). Keys are UUIDs.
active_collectors: TtlCache[uuid.UUID] = TtlCache(ttl=lambda: settings.COLLECTION_COLLECTOR_CACHE_SECONDS)


def collector_account_and_status(*, collector_id: uuid.UUID) -> tuple[uuid.UUID, str] | None:
    return Collector.objects.filter(pk=collector_id).values_list("account_id", "status").first()


def active_collector_account(collector_id: uuid.UUID) -> uuid.UUID:
    """The account of a collector that is ACTIVE (what ``active_collectors`` holds), else LookupError."""
    found = collector_account_and_status(collector_id=collector_id)
    if found is None or found[1] != Collector.Status.ACTIVE:
        raise LookupError(f"collector {collector_id} is not active")
    return found[0]


# First key of the two-key advisory locks that order a collector's log (ASCII "Coll").
_LOCK_NAMESPACE = 0x436F6C6C


def collector_lock_key(collector_id: uuid.UUID | str) -> tuple[int, int]:
    """The advisory lock guarding one collector's log. A collision of two collectors on the same
    key only makes one wait for the other's inserts; it never changes what is read."""
    value = collector_id if isinstance(collector_id, uuid.UUID) else uuid.UUID(str(collector_id))
    return _LOCK_NAMESPACE, int.from_bytes(value.bytes[:4], "big", signed=True)


def log_watermark(*, collector_id: uuid.UUID | str) -> int:
    """The highest sequence below which the collector's log is final: every batch up to it is
    committed and none can still commit below it (see models.py).

    On PostgreSQL this takes the collector's advisory lock exclusively for an instant, which waits
    for inserts in flight and lets new ones queue behind it for that instant. The read after the
    lock is a new statement, so in READ COMMITTED (the default) it sees every batch committed
    while the lock was awaited.
    """
    if connection.vendor != "postgresql":
        return (
            CollectedBatch.objects.filter(collector_id=collector_id)
            .order_by("-sequence")
            .values_list("sequence", flat=True)
            .first()
            or 0
        )
    key = collector_lock_key(collector_id)
    collector_param = collector_id if isinstance(collector_id, uuid.UUID) else uuid.UUID(str(collector_id))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
        try:
            cursor.execute(
                "SELECT (SELECT max(sequence) FROM collection_collectedbatch WHERE collector_id = %s), "
                "pg_advisory_unlock(%s, %s)",
                [collector_param, *key],
            )
            return cursor.fetchone()[0] or 0
        except BaseException:
            # A session lock left behind would block every insert for this collector until the
            # connection ends: end it now.
            connection.close()
            raise


def collected_batches_read(
    *,
    account_id: uuid.UUID | str,
    collector_id: uuid.UUID | str,
    consumer: str,
    limit: int = 100,
    lock: bool = False,
) -> list[CollectedBatch]:
    """The next batches after ``consumer``'s offset, in sequence order, at most ``limit``, of one
    of the account's collectors (another account's collector reads as unregistered).

    With ``lock=True`` (inside the caller's transaction) the consumer's offset row is locked, so
    two runs of the same consumer take turns instead of reading the same batches; the caller
    processes the batches and calls ``consumer_offset_advance`` in that same transaction.
    """
    offsets = ConsumerOffset.objects.filter(
        collector_id=collector_id, collector__account_id=account_id, consumer=consumer
    ).order_by()
    if lock:
        # Only the offset row: a lock on the collector row would block the inserts that this
        # reader's watermark waits for (deadlock).
        offsets = offsets.select_for_update(of=("self",))
    offset = offsets.values_list("last_sequence", flat=True).first()
    if offset is None:
        raise ConsumerNotRegistered()
    watermark = log_watermark(collector_id=collector_id)
    if watermark <= offset:
        return []
    return list(
        CollectedBatch.objects.filter(
            collector_id=collector_id, account_id=account_id, sequence__gt=offset, sequence__lte=watermark
        ).order_by("sequence")[: max(1, int(limit))]
    )


def consumer_lag(*, account_id: uuid.UUID | str, collector_id: uuid.UUID | str, consumer: str) -> int:
    """How many stored batches ``consumer`` has not consumed yet of one of the account's collectors."""
    offset = (
        ConsumerOffset.objects.filter(
            collector_id=collector_id, collector__account_id=account_id, consumer=consumer
        )
        .values_list("last_sequence", flat=True)
        .first()
    )
    if offset is None:
        raise ConsumerNotRegistered()
    return CollectedBatch.objects.filter(collector_id=collector_id, sequence__gt=offset).count()


def collectors_with_statistics(queryset: QuerySet[Collector] | None = None) -> QuerySet[Collector]:
    """Collectors annotated with their retained batches and bytes and their last batch time."""
    queryset = Collector.objects.all() if queryset is None else queryset
    batches = CollectedBatch.objects.filter(collector=OuterRef("pk"))
    return queryset.annotate(
        retained_batches=Subquery(
            batches.order_by().values("collector").annotate(n=Count("pk")).values("n")[:1]
        ),
        retained_bytes=Subquery(
            batches.order_by().values("collector").annotate(n=Sum("size_bytes")).values("n")[:1]
        ),
        last_batch_at=Subquery(batches.order_by("-sequence").values("received_at")[:1]),
    )


def collector_recent_batches(*, collector_id: uuid.UUID | str, count: int = 10) -> list[CollectedBatch]:
    return list(CollectedBatch.objects.filter(collector_id=collector_id).order_by("-sequence")[:count])


# --- Intake: batches, records and bytes per collector and minute --------------------------------


class BatchRecordCount(Func):
    """How many records a stored batch holds, counted in the database as streams split a batch
    (``streams.engine.collection_seam.batch_records``): an object is one record, an array its
    items, a string one record per non-blank line (NDJSON; a line holding an array counts once).
    Only arrays and strings are parsed; SQLite (the embedded default) counts a string's lines,
    blank ones included."""

    output_field = IntegerField()
    POSTGRESQL = (
        "CASE left(ltrim(PAYLOAD, E' \\t\\r\\n'), 1) WHEN '{' THEN 1 "
        "WHEN '[' THEN json_array_length(PAYLOAD::json) "
        "WHEN '\"' THEN (SELECT count(*) FROM regexp_split_to_table(PAYLOAD::json #>> '{}', E'\\n') AS line "
        "WHERE btrim(line, E' \\t\\r') <> '') "
        "ELSE 1 END"
    )
    SQLITE = (
        "CASE substr(ltrim(PAYLOAD, ' ' || char(9, 10, 13)), 1, 1) WHEN '{' THEN 1 "
        "WHEN '[' THEN json_array_length(PAYLOAD) "
        "WHEN '\"' THEN CASE WHEN trim(json_extract(PAYLOAD, '$'), ' ' || char(9, 10, 13)) = '' THEN 0 "
        "ELSE length(trim(json_extract(PAYLOAD, '$'), char(10))) "
        "- length(replace(trim(json_extract(PAYLOAD, '$'), char(10)), char(10), '')) + 1 END "
        "ELSE 1 END"
    )

    def __init__(self) -> None:
        super().__init__(F("payload"))

    def _sql(self, template: str, compiler, connection) -> tuple[str, list]:
        payload, params = compiler.compile(self.source_expressions[0])
        if params:  # a column reference never has parameters; the template repeats it
            raise ValueError("BatchRecordCount counts a column, not an expression with parameters.")
        return template.replace("PAYLOAD", payload), []

    def as_postgresql(self, compiler, connection, **extra_context):
        return self._sql(self.POSTGRESQL, compiler, connection)

    def as_sqlite(self, compiler, connection, **extra_context):
        return self._sql(self.SQLITE, compiler, connection)


@dataclass(frozen=True)
class IntakeMinute:
    """One collector's batches, records and bytes received in one minute (UTC)."""

    collector_id: uuid.UUID
    minute: datetime
    batches: int
    records: int
    bytes: int


def collector_intake_per_minute(
    *, account_id: uuid.UUID, since: datetime, until: datetime
) -> list[IntakeMinute]:
    """The account's collected batches received from ``since`` to ``until`` (both included) per
    collector and minute, in one query (the log's BRIN index on ``received_at`` bounds the scan to the window). Minutes without a
    batch are not listed. Pruning keeps every batch younger than ``COLLECTION_RETENTION_HOURS``, so a
    window shorter than that counts every batch received in it."""
    rows = (
        CollectedBatch.objects.filter(account_id=account_id, received_at__gte=since, received_at__lte=until)
        .annotate(minute=TruncMinute("received_at", tzinfo=UTC))
        .values("collector_id", "minute")
        .order_by()
        .annotate(batches=Count("pk"), records=Sum(BatchRecordCount()), size=Sum("size_bytes"))
    )
    return [
        IntakeMinute(
            collector_id=row["collector_id"],
            minute=row["minute"],
            batches=row["batches"],
            records=row["records"] or 0,
            bytes=row["size"] or 0,
        )
        for row in rows
    ]
