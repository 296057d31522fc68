"""Celery tasks of the streams app: thin, idempotent, each calls one service."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction

from streams.engine import services
from streams.models import StreamRun

RETRY_BASE_SECONDS = 5
RETRY_MAX_SECONDS = 300


@shared_task(name="streams.run_stream", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def run_stream(self, stream_id: str, trigger: str = StreamRun.Trigger.REALTIME) -> str | None:
    """Run a stream over its collectors' next batches. Safe to run twice: a batch is consumed
    only together with the run's effects. After a run that consumed batches, the next run is
    queued until one finds nothing new. A failed run consumed nothing; it is retried with
    backoff (and the next collected batch triggers it again anyway). A stream deleted since the
    task was queued has nothing left to run."""
    from streams.exceptions import StreamNotFound

    try:
        run = services.stream_run_collected(stream_id=stream_id, trigger=trigger)
    except StreamNotFound:
        return None
    if run is None:
        return None
    if run.status == StreamRun.Status.FAILED:
        raise self.retry(countdown=min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** self.request.retries))
    transaction.on_commit(lambda: run_stream.delay(stream_id, trigger))
    return str(run.pk)


@shared_task(name="streams.sweep_session_timeouts", acks_late=True, reject_on_worker_lost=True)
def sweep_session_timeouts() -> int:
    """Beat, every 30 s: emit timed-out aggregation sessions downstream, each exactly once."""
    return services.session_timeouts_sweep().sessions_emitted


@shared_task(name="streams.purge_dedup_keys", acks_late=True, reject_on_worker_lost=True)
def purge_dedup_keys() -> int:
    """Beat, hourly: forget deduplication keys whose window has passed."""
    return services.dedup_keys_purge()


@shared_task(name="streams.catch_up_realtime", acks_late=True, reject_on_worker_lost=True)
def catch_up_realtime() -> int:
    """Beat, every 5 s: queue a run of each realtime stream behind its collectors' logs (an
    enqueue lost after a send, or a worker that was down). Returns how many were queued."""
    from streams.engine.wiring import realtime_streams_behind

    behind = realtime_streams_behind()
    for stream_id in behind:
        run_stream.delay(stream_id, StreamRun.Trigger.REALTIME)
    return len(behind)


@shared_task(name="streams.deliver_flushed_records", bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=5)
def deliver_flushed_records(self, stream_id: str, node_id: str, records: list[dict]) -> str | None:
    """After a flush commits: the meter node's metered records go to its downstream nodes. A
    failed delivery is retried with backoff (at least once, like every HTTP delivery)."""
    from streams.exceptions import StreamNotFound

    try:
        run = services.stream_run_flushed(stream_id=stream_id, node_id=node_id, records=records)
    except StreamNotFound:
        return None
    if run is not None and run.status == StreamRun.Status.FAILED:
        raise self.retry(countdown=min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** self.request.retries))
    return str(run.pk) if run is not None else None
