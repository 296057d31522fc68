"""Celery tasks of the collection app: thin, idempotent, taking ids and calling one service."""

from __future__ import annotations

from celery import shared_task

from collection import services


@shared_task(name="collection.collector_provision", acks_late=True, reject_on_worker_lost=True)
def collector_provision(collector_id: str) -> bool:
    """CREATING → ACTIVE; a second run changes nothing."""
    return services.collector_provision(collector_id=collector_id)


@shared_task(name="collection.collector_purge", bind=True, acks_late=True, reject_on_worker_lost=True)
def collector_purge(self, collector_id: str) -> bool:
    """Delete a DELETING collector's batches in chunks, then the collector; continues in a new run
    while batches remain, so one run never holds a worker for long."""
    finished = services.collector_purge(collector_id=collector_id)
    if not finished:
        self.apply_async(args=[collector_id], countdown=1)
    return finished


@shared_task(name="collection.collectors_sweep", acks_late=True)
def collectors_sweep() -> dict[str, int]:
    """Every minute (beat): provision or purge collectors whose task was never enqueued."""
    return services.collectors_sweep()


@shared_task(name="collection.collected_batches_prune", acks_late=True)
def collected_batches_prune() -> int:
    """Every hour (beat): delete batches every consumer has passed and older than the retention."""
    return services.collected_batches_prune()
