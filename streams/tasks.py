"""Celery tasks of the streams app: thin, idempotent, each calls one service."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from streams.engine import services
from streams.engine.selectors import realtime_streams_behind
from streams.models import StreamRun

MAX_DELIVERY_RUNS = 50  # then the task queues itself again, so one busy queue never holds a worker for long


@shared_task(name="streams.run_stream", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def run_stream(self, stream_id: str, trigger: str = StreamRun.Trigger.REALTIME) -> str | None:
    """Run a stream over its collectors' next batches. Safe to run twice: a batch is consumed
    only together with the run's effects. After a run that consumed batches, the next run is
    queued until one finds nothing new. A failed run consumed nothing; it is retried when the
    stream's backoff ends (5 s after the first failure, doubling to 5 minutes: the service runs
    nothing before then, whoever asks). A stream deleted since the task was queued has nothing
    left to run."""
    from streams.exceptions import StreamNotFound

    try:
        run = services.stream_run_collected(stream_id=stream_id, trigger=trigger)
    except StreamNotFound:
        return None
    if run is None:
        return None
    if run.status == StreamRun.Status.FAILED:
        failures, _ = services.stream_run_failures(stream=run.stream)
        raise self.retry(countdown=services.stream_run_backoff_seconds(failures))
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
    behind = realtime_streams_behind()
    for stream_id in behind:
        run_stream.delay(stream_id, StreamRun.Trigger.REALTIME)
    return len(behind)


@shared_task(name="streams.deliver_flushed_records", acks_late=True, reject_on_worker_lost=True)
def deliver_flushed_records(stream_id: str, node_id: str) -> int:
    """After a flush commits: deliver the Meter processor's waiting flush deliveries (the outbox)
    to its downstream nodes, oldest first, until none is due. Safe to run twice: a delivery is
    deleted with the run that delivered it. A failed run leaves its deliveries waiting with a
    backoff; the sweep retries them. Returns the number of records delivered."""
    from streams.exceptions import StreamNotFound

    delivered = 0
    for _ in range(MAX_DELIVERY_RUNS):
        try:
            run = services.stream_flush_deliver(stream_id=stream_id, node_id=node_id)
        except StreamNotFound:
            break
        if run is None or run.status == StreamRun.Status.FAILED:
            break
        delivered += run.records_in
    else:
        transaction.on_commit(lambda: deliver_flushed_records.delay(stream_id, node_id))
    return delivered


@shared_task(name="streams.sweep_flush_deliveries", acks_late=True, reject_on_worker_lost=True)
def sweep_flush_deliveries() -> int:
    """Beat, every 10 s: deliver every flush delivery that is due (an enqueue lost after its
    flush committed, or a retry whose backoff has passed). Returns the records delivered."""
    return services.flush_deliveries_sweep()


@shared_task(name="streams.fail_abandoned_runs", acks_late=True, reject_on_worker_lost=True)
def fail_abandoned_runs() -> int:
    """Beat, every minute: runs left RUNNING by a worker that died are marked FAILED."""
    return services.stream_runs_abandoned_fail()


@shared_task(name="streams.deliver_output", acks_late=True, reject_on_worker_lost=True)
def deliver_output(stream_id: str, node_id: str) -> int:
    """After a run that wrote to an output's outbox commits (or when a retry is due): send the
    output's due deliveries, oldest first. A failed attempt queues this task again for when its
    backoff ends; a call that reached its limit queues it at once. Safe to run twice: every
    attempt is claimed. Returns the number of records delivered."""
    from streams.engine import deliveries

    result = deliveries.output_deliveries_send(stream_id=stream_id, node_id=node_id)
    if result.more:
        transaction.on_commit(lambda: deliveries.output_wake(stream_id, node_id))
    elif result.failed and result.retry_at is not None:
        countdown = max(0.0, (result.retry_at - timezone.now()).total_seconds())
        transaction.on_commit(lambda: deliveries.output_wake(stream_id, node_id, countdown=countdown))
    return result.delivered


@shared_task(name="streams.sweep_output_deliveries", acks_late=True, reject_on_worker_lost=True)
def sweep_output_deliveries() -> int:
    """Beat, every 5 s: queue ``deliver_output`` for every output whose oldest delivery is due (a
    lost wake-up, a retry whose backoff passed, a lease left by a worker that died). Returns how
    many outputs were queued."""
    from streams.engine import deliveries

    due = deliveries.output_queues_due()
    for stream_id, node_id in due:
        deliveries.output_wake(stream_id, node_id)
    return len(due)


@shared_task(name="streams.purge_delivered_outputs", acks_late=True, reject_on_worker_lost=True)
def purge_delivered_outputs() -> int:
    """Beat, hourly: delete delivered output deliveries past their retention."""
    from streams.engine import deliveries

    return deliveries.output_deliveries_purge()
