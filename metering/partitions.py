"""The usage ledger's monthly partitions on PostgreSQL: created ahead, detached past the retention.

On PostgreSQL ``metering_usagerecord`` is range-partitioned by month on ``timestamp`` (UTC
months; primary key ``(id, timestamp)``; migration ``0004_ledger_partitions``). One partition per
month, ``metering_usagerecord_pYYYY_MM``, and a DEFAULT partition, ``metering_usagerecord_default``,
that takes any row no monthly partition covers, so an insert is never refused. Deduplication does
not need a unique index on the ledger: the idempotency keys have their own table.

- ``ledger_partitions_ensure`` creates the partitions of the current month and the next
  ``LEDGER_PARTITION_MONTHS_AHEAD`` (and of every month that has rows waiting in DEFAULT). Rows of
  a month that landed in DEFAULT are moved into the new partition in the same transaction
  (PostgreSQL refuses to attach a partition whose range still has rows in DEFAULT).
- ``ledger_partitions_expire`` detaches (and, if asked, drops) the partitions of months older than
  ``LEDGER_RETENTION_MONTHS``. The hourly rollups are kept, so usage queries still answer for those
  months; reads of the raw ledger (dimension group-bys and filters, meter recomputation) no longer
  see them.
- ``ledger_partitions_maintain`` runs both: the daily beat task and ``manage.py ledger_partitions``.

Every partition is created or detached in its own transaction with a short ``lock_timeout``: the
DDL waits at most ``LOCK_TIMEOUT`` behind running queries (and so never holds up ingestion for
longer), and a month that could not be locked is reported as skipped and retried by the next run.

Any other database (SQLite, the embedded default) has a plain ledger table: every function here
does nothing there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.utils.timezone import now as utc_now

from metering.ledger.parsing import acceptance_days

LEDGER = "metering_usagerecord"
DEFAULT_PARTITION = f"{LEDGER}_default"
PARTITION_NAME = re.compile(rf"^{LEDGER}_p(\d{{4}})_(\d{{2}})$")
# The longest any partition DDL waits for a lock before the month is skipped until the next run.
LOCK_TIMEOUT = "5s"
LOCK_NOT_AVAILABLE = "55P03"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Progress = Callable[[str], None] | None


@dataclass(slots=True)
class PartitionsReport:
    """What one run changed: partition names, rows moved out of DEFAULT, months skipped (and why)."""

    created: list[str] = field(default_factory=list)
    moved_rows: int = 0
    detached: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


# --- months ----------------------------------------------------------------------------------------


def month_start(moment: datetime) -> datetime:
    """The first instant of ``moment``'s month, UTC."""
    moment = moment.astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 + count
    return month.replace(year=index // 12, month=index % 12 + 1)


def partition_name(month: datetime) -> str:
    return f"{LEDGER}_p{month.year:04d}_{month.month:02d}"


def partition_month(name: str) -> datetime | None:
    """The month a monthly partition's name stands for (``None`` for any other table name)."""
    matched = PARTITION_NAME.match(name)
    return datetime(int(matched[1]), int(matched[2]), 1, tzinfo=UTC) if matched else None


def _literal(moment: datetime) -> str:
    # Partition bounds are DDL (no bind parameters): always a UTC timestamp we formatted ourselves.
    return f"'{moment.astimezone(UTC).isoformat(sep=' ')}'"


# --- catalogue reads -------------------------------------------------------------------------------


def ledger_is_partitioned(*, using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when the ledger is a partitioned table (PostgreSQL after migration 0004)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [LEDGER])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def ledger_partitions(*, using: str = DEFAULT_DB_ALIAS) -> dict[str, datetime | None]:
    """The ledger's attached partitions: name → month (``None`` for DEFAULT), oldest month first.
    One catalogue query (empty for a plain ledger); nothing off PostgreSQL."""
    if connections[using].vendor != "postgresql":
        return {}
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [LEDGER],
        )
        names = [row[0] for row in cursor.fetchall()]
    months = {name: partition_month(name) for name in names}
    return dict(sorted(months.items(), key=lambda item: (item[1] is not None, item[1] or EPOCH)))


def _table_exists(cursor, name: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
    return cursor.fetchone()[0]


def _is_attached(cursor, name: str) -> bool:
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = to_regclass(%s) "
        "AND inhrelid = to_regclass(%s))",
        [LEDGER, name],
    )
    return cursor.fetchone()[0]


def _columns(cursor, table: str) -> str:
    cursor.execute(
        "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        [table],
    )
    return cursor.fetchone()[0]


def _skip_when_lock_not_granted(error: OperationalError, report, progress, name: str) -> None:
    """Record ``name`` as skipped when ``error`` is the lock timeout (the next run retries);
    re-raise any other error."""
    if not _lock_not_available(error):
        raise error
    report.skipped.append((name, f"lock not available within {LOCK_TIMEOUT}"))
    _say(progress, f"skipped {name}: lock not available within {LOCK_TIMEOUT}; the next run retries")


def _lock_not_available(error: OperationalError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


# --- creating partitions ahead ---------------------------------------------------------------------


def ledger_partitions_ensure(
    *,
    months_ahead: int | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    using: str = DEFAULT_DB_ALIAS,
    progress: Progress = None,
) -> PartitionsReport:
    """Create the monthly partitions from ``since``'s month (default: the current month) to
    ``months_ahead`` months after the current one (default ``LEDGER_PARTITION_MONTHS_AHEAD``), and
    one for every month with rows in DEFAULT; recreate DEFAULT if it is missing. Idempotent.

    A month whose name is taken by a table that is not attached (a partition detached by the
    retention, kept as an archive) is skipped and its rows stay in DEFAULT.
    """
    report = PartitionsReport()
    if not ledger_is_partitioned(using=using):
        return report
    if months_ahead is None:
        months_ahead = settings.LEDGER_PARTITION_MONTHS_AHEAD
    if months_ahead < 0:
        raise ValueError("months_ahead must be 0 or more.")
    current = month_start(now or utc_now())
    first = min(month_start(since), current) if since is not None else current
    wanted = {first}
    while max(wanted) < add_months(current, months_ahead):
        wanted.add(add_months(max(wanted), 1))
    connection = connections[using]
    with connection.cursor() as cursor:
        if not _is_attached(cursor, DEFAULT_PARTITION):
            with transaction.atomic(using=using):
                cursor.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {LEDGER} DEFAULT")
            report.created.append(DEFAULT_PARTITION)
            _say(progress, f"created {DEFAULT_PARTITION}")
        cursor.execute(f"SELECT DISTINCT date_trunc('month', \"timestamp\", 'UTC') FROM {DEFAULT_PARTITION}")  # noqa: S608
        waiting = {month_start(row[0]) for row in cursor.fetchall()}
    attached = set(ledger_partitions(using=using))
    for month in sorted(wanted | waiting):
        name = partition_name(month)
        if name in attached:
            continue
        try:
            with transaction.atomic(using=using), connection.cursor() as cursor:
                moved = _create_partition(cursor, month)
        except OperationalError as error:
            _skip_when_lock_not_granted(error, report, progress, name)
            continue
        if moved == ATTACHED_MEANWHILE:
            continue
        if moved == NAME_TAKEN:
            report.skipped.append((name, "a table of that name exists and is not attached"))
            _say(
                progress,
                f"skipped {name}: a table of that name exists and is not attached (a detached month)",
            )
            continue
        report.created.append(name)
        report.moved_rows += moved
        _say(
            progress,
            f"created {name}" + (f", moved {moved} row(s) out of {DEFAULT_PARTITION}" if moved else ""),
        )
    return report


# What _create_partition answers instead of a row count when it creates nothing.
ATTACHED_MEANWHILE = -1  # a concurrent run made it
NAME_TAKEN = -2  # a table of that name exists and is not attached


def _create_partition(cursor, month: datetime) -> int:
    """One month's partition, attached; its rows moved out of DEFAULT first. Returns the rows moved,
    or ``ATTACHED_MEANWHILE`` / ``NAME_TAKEN``. Runs inside a transaction.

    Locks, in this order: the ledger in SHARE UPDATE EXCLUSIVE (concurrent runs queue here; inserts
    and reads go on), then DEFAULT in ACCESS EXCLUSIVE (no row can land there for the month while
    its rows move). The new table is attached, not created as ``PARTITION OF``, which would lock the
    whole ledger against inserts; ATTACH builds the ledger's indexes on it.
    """
    name = partition_name(month)
    start, end = _literal(month), _literal(add_months(month, 1))
    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    cursor.execute(f"LOCK TABLE {LEDGER} IN SHARE UPDATE EXCLUSIVE MODE")
    if _table_exists(cursor, name):
        return ATTACHED_MEANWHILE if _is_attached(cursor, name) else NAME_TAKEN
    cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(f"CREATE TABLE {name} (LIKE {LEDGER})")
    columns = _columns(cursor, LEDGER)
    cursor.execute(
        f'WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE "timestamp" >= {start} '  # noqa: S608
        f'AND "timestamp" < {end} RETURNING {columns}) INSERT INTO {name} ({columns}) SELECT {columns} FROM moved'
    )
    moved = cursor.rowcount
    cursor.execute(f"ALTER TABLE {LEDGER} ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})")
    return moved


# --- retention -------------------------------------------------------------------------------------


def retention_cutoff(*, retention_months: int, now: datetime) -> datetime:
    """The first month kept: ``retention_months`` full months before the current one, but never
    a month that can still receive records (newer than the acceptance window and clock skew
    allow), so a detached month never gets new rows."""
    if retention_months < 1:
        raise ValueError("The ledger's retention must be at least 1 month.")
    oldest_accepted = now - timedelta(days=acceptance_days(), seconds=settings.USAGE_CLOCK_SKEW_SECONDS)
    return min(add_months(month_start(now), -retention_months), month_start(oldest_accepted))


def ledger_partitions_expire(
    *,
    retention_months: int | None = None,
    drop: bool | None = None,
    now: datetime | None = None,
    using: str = DEFAULT_DB_ALIAS,
    progress: Progress = None,
) -> PartitionsReport:
    """Detach the monthly partitions older than the retention (``retention_months``, default
    ``LEDGER_RETENTION_MONTHS``; ``None`` keeps everything) and, with ``drop`` (default
    ``LEDGER_RETENTION_DROP``), drop them. A detached partition stays as a plain table of its own
    (dump or archive it, then drop it). The hourly rollups are kept. DEFAULT is never detached.
    """
    report = PartitionsReport()
    if retention_months is None:
        retention_months = settings.LEDGER_RETENTION_MONTHS
    if drop is None:
        drop = settings.LEDGER_RETENTION_DROP
    if retention_months is None or not ledger_is_partitioned(using=using):
        return report
    cutoff = retention_cutoff(retention_months=retention_months, now=now or utc_now())
    connection = connections[using]
    for name, month in ledger_partitions(using=using).items():
        if month is None or month >= cutoff:
            continue
        try:
            with transaction.atomic(using=using), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                # A plain DETACH locks the ledger briefly (ACCESS EXCLUSIVE): CONCURRENTLY is not
                # allowed on a table with a DEFAULT partition.
                cursor.execute(f"ALTER TABLE {LEDGER} DETACH PARTITION {name}")
                if drop:
                    cursor.execute(f"DROP TABLE {name}")
        except OperationalError as error:
            _skip_when_lock_not_granted(error, report, progress, name)
            continue
        report.detached.append(name)
        if drop:
            report.dropped.append(name)
        _say(progress, f"{'dropped' if drop else 'detached'} {name} (older than {cutoff:%Y-%m})")
    return report


def ledger_partitions_maintain(*, now: datetime | None = None, progress: Progress = None) -> PartitionsReport:
    """The daily run (beat task "metering: ledger partitions"): partitions ahead, then retention."""
    now = now or utc_now()
    created = ledger_partitions_ensure(now=now, progress=progress)
    expired = ledger_partitions_expire(now=now, progress=progress)
    return PartitionsReport(
        created=created.created,
        moved_rows=created.moved_rows,
        detached=expired.detached,
        dropped=expired.dropped,
        skipped=created.skipped + expired.skipped,
    )


# --- converting the table (migration 0004) ---------------------------------------------------------


def _plain_indexes(cursor, table: str) -> list[tuple[str, str]]:
    """``(name, CREATE INDEX …)`` of the table's indexes that back no constraint (the PK is redone)."""
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = to_regclass(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
        "WHERE c.conindid = x.indexrelid) ORDER BY i.relname",
        [table],
    )
    # A partitioned table's index reads "ON ONLY table": on a plain table (and to recreate it on a
    # partitioned one, cascading to every partition) it is "ON table".
    return [(name, definition.replace(" ON ONLY ", " ON ", 1)) for name, definition in cursor.fetchall()]


def _swap_table(cursor, *, partitioned: bool) -> int:
    """Rebuild the ledger as a partitioned (or plain) table holding the same rows, ids, identity
    sequence position and indexes. Returns the rows copied. Runs inside a transaction."""
    old = f"{LEDGER}_old"
    cursor.execute(f"LOCK TABLE {LEDGER} IN EXCLUSIVE MODE")  # reads go on while the rows are copied
    indexes = _plain_indexes(cursor, LEDGER)
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p'", [LEDGER]
    )
    primary_key = cursor.fetchone()[0]
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [LEDGER])
    sequence = cursor.fetchone()[0]
    cursor.execute(f"SELECT last_value, is_called FROM {sequence}")  # noqa: S608
    last_value, is_called = cursor.fetchone()
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {name}")
    cursor.execute(f"ALTER TABLE {LEDGER} DROP CONSTRAINT {primary_key}")
    cursor.execute(f"ALTER TABLE {LEDGER} RENAME TO {old}")
    cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {old}_id_seq")
    cursor.execute(
        f"CREATE TABLE {LEDGER} (LIKE {old} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS "
        "INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS)"
        + (' PARTITION BY RANGE ("timestamp")' if partitioned else "")
    )
    if partitioned:
        cursor.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {LEDGER} DEFAULT")
        cursor.execute(f'SELECT min("timestamp"), max("timestamp") FROM {old}')  # noqa: S608
        oldest, newest = cursor.fetchone()
        # Every month of the existing rows gets its partition before the copy, so the rows are
        # written once, straight into their month; then the current month and the ones ahead.
        if oldest is not None:
            ledger_partitions_ensure(since=oldest, months_ahead=0, now=newest, using=cursor.db.alias)
        ledger_partitions_ensure(using=cursor.db.alias)
    columns = _columns(cursor, old)
    cursor.execute(f"INSERT INTO {LEDGER} ({columns}) SELECT {columns} FROM {old}")  # noqa: S608
    copied = cursor.rowcount
    cursor.execute(f"SELECT max(id) FROM {old}")  # noqa: S608
    used = max(cursor.fetchone()[0] or 0, last_value if is_called else last_value - 1)
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [LEDGER, max(used, 1), used >= 1]
    )
    cursor.execute(f"DROP TABLE {old}")
    # Indexes after the copy: one build per partition instead of row-by-row maintenance.
    key = 'id, "timestamp"' if partitioned else "id"
    cursor.execute(f"ALTER TABLE {LEDGER} ADD CONSTRAINT {primary_key} PRIMARY KEY ({key})")
    for _name, definition in indexes:
        cursor.execute(definition)
    cursor.execute(f"ANALYZE {LEDGER}")
    return copied


def ledger_table_partition(*, using: str = DEFAULT_DB_ALIAS) -> int:
    """Convert the plain ledger table into the monthly-partitioned one (rows, ids and indexes kept;
    a partition for every month of the existing rows and the months ahead). Migration 0004;
    a no-op off PostgreSQL or when the ledger is partitioned already. Returns the rows moved."""
    if connections[using].vendor != "postgresql" or ledger_is_partitioned(using=using):
        return 0
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        return _swap_table(cursor, partitioned=True)


def ledger_table_unpartition(*, using: str = DEFAULT_DB_ALIAS) -> int:
    """The reverse of ``ledger_table_partition`` (migration 0004 backwards): one plain table with
    every attached partition's rows. Detached partitions are left alone. Returns the rows moved."""
    if not ledger_is_partitioned(using=using):
        return 0
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        return _swap_table(cursor, partitioned=False)
