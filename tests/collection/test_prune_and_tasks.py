"""Pruning the log, and the collection tasks (each safe to run twice)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from collection import services, tasks
from collection.exceptions import CollectorNotFound
from collection.models import CollectedBatch, Collector, ConsumerOffset
from collection.selectors import collected_batches_read
from tests.collection.conftest import make_collector

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2024, 3, 10, 12, 0, tzinfo=dt.UTC)


def append(collector, value, *, hours_ago: float, key: str | None = None) -> int:
    services.collected_batch_append(
        account_id=collector.account_id,
        collector_id=collector.pk,
        payload=json.dumps(value).encode(),
        idempotency_key=key,
        received_at=NOW - dt.timedelta(hours=hours_ago),
    )
    return CollectedBatch.objects.order_by("-sequence").values_list("sequence", flat=True).first()


def advance(collector, consumer: str, sequence: int) -> None:
    with transaction.atomic():
        services.consumer_offset_advance(
            account_id=collector.account_id, collector_id=collector.pk, consumer=consumer, sequence=sequence
        )


def remaining(collector) -> list:
    return [
        json.loads(p)
        for p in CollectedBatch.objects.filter(collector=collector)
        .order_by("sequence")
        .values_list("payload", flat=True)
    ]


@pytest.fixture
def retention(settings):
    settings.COLLECTION_RETENTION_HOURS = 24
    settings.COLLECTION_IDEMPOTENCY_DAYS = 35
    return settings


def test_prunes_old_batches_every_consumer_has_passed_and_keeps_the_rest(collector, retention):
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:fast"
    )
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:slow"
    )
    sequences = [append(collector, n, hours_ago=48 - n) for n in range(4)]  # all older than 24 h
    young = append(collector, "young", hours_ago=1)
    advance(collector, "stream:fast", young)
    advance(collector, "stream:slow", sequences[1])

    assert services.collected_batches_prune(now=NOW) == 2

    assert remaining(collector) == [2, 3, "young"]  # the slow consumer still needs 2 and 3
    with transaction.atomic():
        assert [
            json.loads(b.payload)
            for b in collected_batches_read(
                account_id=collector.account_id, collector_id=collector.pk, consumer="stream:slow", lock=True
            )
        ] == [2, 3, "young"]
    collector.refresh_from_db()
    assert (collector.pruned_batches, collector.pruned_bytes) == (2, 2)


def test_a_registered_consumer_that_consumed_nothing_keeps_everything(collector, retention):
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:new"
    )
    append(collector, "ancient", hours_ago=1000)
    assert services.collected_batches_prune(now=NOW) == 0
    assert remaining(collector) == ["ancient"]


def test_a_reader_from_another_account_never_holds_back_pruning(collector, other_account, retention):
    """Registering from another account is refused, so no offset of it can keep the log."""
    append(collector, 1, hours_ago=30)
    with pytest.raises(CollectorNotFound):
        services.consumer_register(
            account_id=other_account.pk, collector_id=collector.pk, consumer="stream:x"
        )
    assert ConsumerOffset.objects.count() == 0
    assert services.collected_batches_prune(now=NOW) == 1


def test_young_batches_are_kept_even_when_consumed(collector, retention):
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
    )
    last = append(collector, "recent", hours_ago=23)
    advance(collector, "stream:a", last)
    assert services.collected_batches_prune(now=NOW) == 0
    assert remaining(collector) == ["recent"]


def test_without_consumers_batches_live_for_the_retention_period(collector, retention):
    append(collector, "old", hours_ago=25)
    append(collector, "new", hours_ago=2)
    assert services.collected_batches_prune(now=NOW) == 1
    assert remaining(collector) == ["new"]


def test_a_batch_with_an_idempotency_key_is_kept_for_the_idempotency_window(collector, retention):
    append(collector, "keyed recent", hours_ago=48, key="k1")
    append(collector, "keyed ancient", hours_ago=24 * 36, key="k2")
    assert services.collected_batches_prune(now=NOW) == 1
    assert remaining(collector) == ["keyed recent"]


def test_prune_works_in_bounded_chunks(collector, retention):
    for n in range(7):
        append(collector, n, hours_ago=30)
    assert services.collected_batches_prune(now=NOW, chunk_size=2, max_chunks=2) == 4
    assert remaining(collector) == [4, 5, 6]
    assert services.collected_batches_prune(now=NOW, chunk_size=2, max_chunks=10) == 3
    assert remaining(collector) == []
    collector.refresh_from_db()
    assert collector.pruned_batches == 7


def test_prune_task_is_safe_to_run_twice(collector, retention):
    append(collector, "old", hours_ago=10_000)
    assert tasks.collected_batches_prune.apply().get() == 1
    assert tasks.collected_batches_prune.apply().get() == 0


def test_provision_task_is_idempotent_and_only_moves_creating_to_active(account):
    collector = make_collector(account, active=False)
    assert tasks.collector_provision.apply(args=[str(collector.pk)]).get() is True
    assert tasks.collector_provision.apply(args=[str(collector.pk)]).get() is False
    collector.refresh_from_db()
    assert collector.status == Collector.Status.ACTIVE
    services.collector_delete(collector=collector)
    assert tasks.collector_provision.apply(args=[str(collector.pk)]).get() is False
    collector.refresh_from_db()
    assert collector.status == Collector.Status.DELETING


def test_purge_task_removes_the_batches_offsets_and_collector_and_a_second_run_is_a_no_op(account):
    collector = make_collector(account)
    keep = make_collector(account, "keep")
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
    )
    for n in range(5):
        append(collector, n, hours_ago=0)
    append(keep, "kept", hours_ago=0)

    assert tasks.collector_purge.apply(args=[str(collector.pk)]).get() is False  # still ACTIVE: refused
    assert CollectedBatch.objects.filter(collector=collector).count() == 5
    services.collector_delete(collector=collector)
    assert tasks.collector_purge.apply(args=[str(collector.pk)]).get() is True
    assert tasks.collector_purge.apply(args=[str(collector.pk)]).get() is True
    assert not Collector.objects.filter(pk=collector.pk).exists()
    assert CollectedBatch.objects.filter(collector_id=collector.pk).count() == 0
    assert ConsumerOffset.objects.count() == 0
    assert remaining(keep) == ["kept"]


def test_purge_in_chunks_reports_unfinished_until_done(account):
    collector = make_collector(account)
    for n in range(5):
        append(collector, n, hours_ago=0)
    services.collector_delete(collector=collector)
    assert services.collector_purge(collector_id=collector.pk, chunk_size=2, max_chunks=2) is False
    assert CollectedBatch.objects.filter(collector_id=collector.pk).count() == 1
    assert services.collector_purge(collector_id=collector.pk, chunk_size=2, max_chunks=2) is True
    assert not Collector.objects.filter(pk=collector.pk).exists()


def test_sweep_provisions_stale_creating_collectors_and_purges_deleting_ones(account):
    stale = make_collector(account, "stale", active=False)
    fresh = make_collector(account, "fresh", active=False)
    deleting = make_collector(account, "deleting")
    services.collector_delete(collector=deleting)
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    Collector.objects.filter(pk__in=[stale.pk, deleting.pk]).update(updated_at=an_hour_ago)

    assert tasks.collectors_sweep.apply().get() == {"provisioned": 1, "purged": 1}
    assert tasks.collectors_sweep.apply().get() == {"provisioned": 0, "purged": 0}
    assert dict(Collector.objects.values_list("name", "status")) == {"stale": "ACTIVE", "fresh": "CREATING"}
    assert not Collector.objects.filter(pk=deleting.pk).exists()
    assert fresh.pk


def test_a_broker_outage_while_enqueueing_leaves_the_collector_for_the_sweep(
    account, caplog, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError as BrokerError

    def broker_down(*args, **kwargs):  # the outside world: the broker refuses the connection
        raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.collector_provision, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        collector = services.collector_create(account_id=account.pk, name="queued")
    collector.refresh_from_db()
    assert collector.status == Collector.Status.CREATING
    assert "the sweep will run it" in caplog.text
    Collector.objects.filter(pk=collector.pk).update(updated_at=timezone.now() - dt.timedelta(minutes=5))
    assert services.collectors_sweep() == {"provisioned": 1, "purged": 0}


def test_beat_schedules_the_sweep_and_the_prune():
    schedules = {
        task.task: (task.interval.every, task.interval.period)
        for task in PeriodicTask.objects.filter(task__startswith="collection.")
    }
    assert schedules == {
        "collection.collectors_sweep": (1, "minutes"),
        "collection.collected_batches_prune": (1, "hours"),
    }


def test_a_collector_deleted_while_creating_is_never_provisioned(account):
    collector = make_collector(account, active=False)
    services.collector_delete(collector=collector)
    assert tasks.collector_provision.apply(args=[str(collector.pk)]).get() is False
    collector.refresh_from_db()
    assert collector.status == Collector.Status.DELETING


def test_creating_a_collector_for_an_unknown_account_is_refused(db):
    import uuid

    from config.api.errors import ApiError

    with pytest.raises(ApiError) as raised:
        services.collector_create(account_id=uuid.uuid4(), name="orphan")
    assert (raised.value.status, raised.value.code) == (404, "ACCOUNT_NOT_FOUND")
    assert Collector.objects.count() == 0
