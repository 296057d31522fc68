"""The collected-batch log: order, per-consumer offsets, and batches that commit late."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from collection import services
from collection.exceptions import CollectorNotFound, ConsumerNotRegistered, OffsetConflict
from collection.models import CollectedBatch, ConsumerOffset
from collection.selectors import collected_batches_read, consumer_lag, log_watermark
from config.api.errors import ApiError
from tests.collection.conftest import make_collector, send

pytestmark = pytest.mark.django_db


def append(collector, value) -> int:
    services.collected_batch_append(
        account_id=collector.account_id, collector_id=collector.pk, payload=json.dumps(value).encode()
    )
    return (
        CollectedBatch.objects.filter(collector=collector)
        .order_by("-sequence")
        .values_list("sequence", flat=True)
        .first()
    )


def consume(collector, consumer: str, limit: int = 100) -> list:
    """One consumer run: read under the offset lock, 'process', advance, all in one transaction."""
    with transaction.atomic():
        batches = collected_batches_read(
            account_id=collector.account_id,
            collector_id=collector.pk,
            consumer=consumer,
            limit=limit,
            lock=True,
        )
        if batches:
            services.consumer_offset_advance(
                account_id=collector.account_id,
                collector_id=collector.pk,
                consumer=consumer,
                sequence=batches[-1].sequence,
            )
    return [json.loads(batch.payload) for batch in batches]


def test_batches_are_read_in_order_and_each_consumer_keeps_its_own_offset(collector):
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
    )
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:b"
    )
    for n in range(5):
        append(collector, n)

    assert consume(collector, "stream:a", limit=2) == [0, 1]
    assert consume(collector, "stream:a", limit=2) == [2, 3]
    assert consume(collector, "stream:b", limit=10) == [0, 1, 2, 3, 4]
    assert consume(collector, "stream:a") == [4]
    assert consume(collector, "stream:a") == []
    assert consume(collector, "stream:b") == []
    append(collector, 5)
    assert consume(collector, "stream:a") == [5]
    assert consumer_lag(account_id=collector.account_id, collector_id=collector.pk, consumer="stream:b") == 1
    assert consume(collector, "stream:b") == [5]


def test_a_consumer_reads_only_its_collectors_batches(account):
    first = make_collector(account, "first")
    second = make_collector(account, "second")
    services.consumer_register(account_id=first.account_id, collector_id=first.pk, consumer="stream:x")
    services.consumer_register(account_id=second.account_id, collector_id=second.pk, consumer="stream:x")
    append(first, "f1")
    append(second, "s1")
    append(first, "f2")
    assert consume(first, "stream:x") == ["f1", "f2"]
    assert consume(second, "stream:x") == ["s1"]


def test_a_run_that_fails_rolls_its_offset_back_and_the_batches_are_read_again(collector):
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
    )
    append(collector, "one")
    append(collector, "two")

    with pytest.raises(RuntimeError), transaction.atomic():
        batches = collected_batches_read(
            account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a", lock=True
        )
        services.consumer_offset_advance(
            account_id=collector.account_id,
            collector_id=collector.pk,
            consumer="stream:a",
            sequence=batches[-1].sequence,
        )
        raise RuntimeError("the stream's effects failed")

    assert ConsumerOffset.objects.get(consumer="stream:a").last_sequence == 0
    assert consume(collector, "stream:a") == ["one", "two"]


def test_an_offset_only_moves_forward(collector):
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
    )
    first, second = append(collector, 1), append(collector, 2)
    with transaction.atomic():
        assert (
            services.consumer_offset_advance(
                account_id=collector.account_id,
                collector_id=collector.pk,
                consumer="stream:a",
                sequence=second,
            )
            == second
        )
    for sequence in (first, second):
        with pytest.raises(OffsetConflict), transaction.atomic():
            services.consumer_offset_advance(
                account_id=collector.account_id,
                collector_id=collector.pk,
                consumer="stream:a",
                sequence=sequence,
            )
    assert ConsumerOffset.objects.get(consumer="stream:a").last_sequence == second


def test_advancing_needs_a_registered_consumer_and_a_batch_of_the_collector(account, collector):
    sequence = append(collector, 1)
    with pytest.raises(ConsumerNotRegistered), transaction.atomic():
        services.consumer_offset_advance(
            account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a", sequence=sequence
        )
    other = make_collector(account, "other")
    services.consumer_register(account_id=other.account_id, collector_id=other.pk, consumer="stream:a")
    with pytest.raises(ApiError) as raised, transaction.atomic():
        services.consumer_offset_advance(
            account_id=other.account_id, collector_id=other.pk, consumer="stream:a", sequence=sequence
        )
    assert raised.value.code == "BATCH_NOT_FOUND"


@pytest.mark.django_db(transaction=True)
def test_advancing_outside_a_transaction_is_refused(account):
    collector = make_collector(account)
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
    )
    sequence = append(collector, 1)
    with pytest.raises(TransactionManagementError):
        services.consumer_offset_advance(
            account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a", sequence=sequence
        )
    assert ConsumerOffset.objects.get().last_sequence == 0


def test_reading_needs_registration(collector):
    append(collector, 1)
    with pytest.raises(ConsumerNotRegistered):
        collected_batches_read(
            account_id=collector.account_id, collector_id=collector.pk, consumer="stream:nobody"
        )


def test_register_is_idempotent_and_latest_skips_what_is_already_stored(collector):
    append(collector, "old")
    earliest = services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:early"
    )
    again = services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:early", start="latest"
    )
    assert (again.pk, again.last_sequence) == (earliest.pk, 0)
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:late", start="latest"
    )
    append(collector, "new")
    assert consume(collector, "stream:early") == ["old", "new"]
    assert consume(collector, "stream:late") == ["new"]


def test_register_validates_and_unregister_forgets(collector):
    with pytest.raises(ApiError):
        services.consumer_register(
            account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a", start="middle"
        )
    with pytest.raises(ApiError):
        services.consumer_register(account_id=collector.account_id, collector_id=collector.pk, consumer="")
    with pytest.raises(CollectorNotFound):
        services.consumer_register(
            account_id=collector.account_id, collector_id=uuid.uuid4(), consumer="stream:a"
        )
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
    )
    assert (
        services.consumer_unregister(
            account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
        )
        is True
    )
    assert (
        services.consumer_unregister(
            account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
        )
        is False
    )
    assert ConsumerOffset.objects.count() == 0


def test_another_accounts_collector_is_an_unknown_one_to_every_consumer_call(collector, other_account):
    """A consumer call names the account it reads for; a collector of another account is
    CollectorNotFound or unregistered exactly like an id that does not exist, and nothing of the
    owner's log or offsets moves."""
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:own"
    )
    sequence = append(collector, "theirs")
    with pytest.raises(CollectorNotFound):
        services.consumer_register(
            account_id=other_account.pk, collector_id=collector.pk, consumer="stream:x"
        )
    with pytest.raises(CollectorNotFound):
        services.consumer_register(
            account_id=other_account.pk, collector_id=uuid.uuid4(), consumer="stream:x"
        )
    # The owner's consumer, named from another account: not there to read, lag, advance or forget.
    with pytest.raises(ConsumerNotRegistered):
        collected_batches_read(account_id=other_account.pk, collector_id=collector.pk, consumer="stream:own")
    with pytest.raises(ConsumerNotRegistered):
        consumer_lag(account_id=other_account.pk, collector_id=collector.pk, consumer="stream:own")
    with pytest.raises(ApiError) as raised, transaction.atomic():
        services.consumer_offset_advance(
            account_id=other_account.pk, collector_id=collector.pk, consumer="stream:own", sequence=sequence
        )
    assert raised.value.code == "BATCH_NOT_FOUND"
    assert (
        services.consumer_unregister(
            account_id=other_account.pk, collector_id=collector.pk, consumer="stream:own"
        )
        is False
    )
    assert list(ConsumerOffset.objects.values_list("consumer", "last_sequence")) == [("stream:own", 0)]
    assert consume(collector, "stream:own") == ["theirs"]


def test_no_accepted_batch_is_lost_while_no_worker_runs(api, collector, settings):
    """Send data needs no worker: batches wait in the log and a consumer that starts later reads
    every one, once, in order."""
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:late"
    )
    ids = [send(api, collector, {"data": {"n": n}}).json()["ingestionId"] for n in range(30)]

    # ...later, the worker comes back and runs the consumer in bounded chunks.
    seen: list[str] = []
    for _ in range(10):
        with transaction.atomic():
            batches = collected_batches_read(
                account_id=collector.account_id,
                collector_id=collector.pk,
                consumer="stream:late",
                limit=7,
                lock=True,
            )
            if not batches:
                break
            seen.extend(str(batch.ingestion_id) for batch in batches)
            services.consumer_offset_advance(
                account_id=collector.account_id,
                collector_id=collector.pk,
                consumer="stream:late",
                sequence=batches[-1].sequence,
            )
    assert seen == ids
    assert (
        consumer_lag(account_id=collector.account_id, collector_id=collector.pk, consumer="stream:late") == 0
    )


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_commits_late_is_not_skipped(account):
    """Batch A takes a sequence first but commits after batch B. A reader must not hand out B
    (and let its consumer move past A's sequence) before A is committed: it waits for A."""
    collector = make_collector(account)
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
    )
    inserted, release = threading.Event(), threading.Event()
    read: list[list[str]] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                services.collected_batch_append(
                    account_id=account.pk, collector_id=collector.pk, payload=b'"A"'
                )
                inserted.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    def reader() -> None:
        try:
            read.append(consume(collector, "stream:a"))
        finally:
            connection.close()

    writer_thread = threading.Thread(target=slow_writer)
    writer_thread.start()
    assert inserted.wait(timeout=10)
    services.collected_batch_append(account_id=account.pk, collector_id=collector.pk, payload=b'"B"')
    sequences = dict(CollectedBatch.objects.values_list("payload", "sequence"))
    assert list(sequences) == ['"B"']  # A is not committed yet

    reader_thread = threading.Thread(target=reader)
    reader_thread.start()
    time.sleep(0.3)
    assert read == []  # waiting for A's insert to end
    release.set()
    writer_thread.join(timeout=10)
    reader_thread.join(timeout=10)

    assert read == [["A", "B"]]
    a, b = (CollectedBatch.objects.get(payload=payload).sequence for payload in ('"A"', '"B"'))
    assert a < b


@pytest.mark.django_db(transaction=True)
def test_two_runs_of_one_consumer_take_turns_and_never_share_a_batch(account):
    collector = make_collector(account)
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:a"
    )
    for n in range(40):
        append(collector, n)
    results: list[list] = []

    def run() -> None:
        try:
            for _ in range(10):
                chunk = consume(collector, "stream:a", limit=5)
                if not chunk:
                    break
                results.append(chunk)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    consumed = sorted(n for chunk in results for n in chunk)
    assert consumed == list(range(40))


def test_watermark_is_the_newest_committed_sequence(collector):
    assert log_watermark(collector_id=collector.pk) == 0
    last = [append(collector, n) for n in range(3)][-1]
    assert log_watermark(collector_id=collector.pk) == last
