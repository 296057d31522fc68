"""Celery tasks of the metering app: thin, safe to run twice, calling one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from metering import flush, partitions


@shared_task(name="metering.flush_due_meters", ignore_result=True)
def flush_due_meters() -> int:
    """The reset sweep (beat, "metering: reset sweep", every minute): flush and reset due meters.

    Bounded: at most ``METERING_FLUSH_MAX_BATCHES`` batches of ``METERING_FLUSH_BATCH_SIZE``
    meters, and no new batch after ``METERING_FLUSH_TIME_BUDGET_SECONDS``. When it stops with due
    meters left it enqueues itself again, so a large reset continues at once instead of waiting
    for the next minute (and other workers can take the new task). Every batch is its own
    transaction: a worker killed mid-sweep loses only the batch in progress, which the next
    sweep flushes (acks_late and reject_on_worker_lost also hand the message to another worker).
    """
    flushed, more_remain = flush.meters_flush_all_due(
        batch_size=settings.METERING_FLUSH_BATCH_SIZE,
        max_batches=settings.METERING_FLUSH_MAX_BATCHES,
        time_budget_seconds=settings.METERING_FLUSH_TIME_BUDGET_SECONDS,
    )
    if more_remain:
        flush_due_meters.delay()
    return flushed


@shared_task(name="metering.purge_usage_dedup_keys", ignore_result=True)
def purge_usage_dedup_keys() -> int:
    """Daily (beat, "metering: purge idempotency keys"): delete the ledger's idempotency keys older
    than ``IDEMPOTENCY_WINDOW_DAYS`` (records that old are refused anyway, so none can count twice)."""
    from metering.ledger import usage_dedup_keys_purge

    return usage_dedup_keys_purge()


@shared_task(name="metering.ledger_partitions_maintain", ignore_result=True)
def ledger_partitions_maintain() -> int:
    """The ledger's monthly partitions (beat, "metering: ledger partitions", daily; PostgreSQL):
    create the current month's and ``LEDGER_PARTITION_MONTHS_AHEAD`` ahead, then detach the months
    older than ``LEDGER_RETENTION_MONTHS``. Idempotent; a month whose lock was not available is
    retried by the next run. Returns the partitions created and detached."""
    report = partitions.ledger_partitions_maintain()
    return len(report.created) + len(report.detached)
