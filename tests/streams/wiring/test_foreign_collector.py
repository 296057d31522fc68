"""Issue 18, item 1: a stream naming another account's collector reads nothing of it.

Account A imports a realtime stream whose ``onlineCollector`` node names account B's collector.
That id resolves only inside A's account, so the node is a node naming an unknown collector: the
stream is never registered as a reader of B's log, is never woken by B's batches, reads nothing
when run anyway, and B's log is pruned as if A's stream did not exist. (The end-to-end version,
with a real worker, an HTTP forwarder and meters, is ``test_cross_account_end_to_end.py``.)
"""

from __future__ import annotations

import datetime
import importlib
import json
import uuid

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.utils import timezone

from collection import services as collection_services
from collection.models import CollectedBatch, Collector, ConsumerOffset
from streams.engine import services as engine_services
from streams.engine.selectors import realtime_streams_behind
from streams.engine.wiring import realtime_readers
from streams.models import InspectRecord, Stream, StreamRun
from streams.services import solution_create, stream_delete

pytestmark = pytest.mark.django_db


def reader_config(collector_id, name: str) -> dict:
    return {
        "name": name,
        "processingType": "realtime",
        "nodes": [
            {
                "id": "in",
                "name": "In",
                "type": "onlineCollector",
                "config": {"collectorId": str(collector_id)},
            },
            {"id": "seen", "name": "Seen", "type": "inspect", "config": {"keepLast": 100}},
        ],
        "edges": [{"source": "in", "target": "seen"}],
    }


def import_through_the_api(client, solution, config) -> Stream:
    response = client.post(
        "/streams/import",
        json.dumps({"solutionId": str(solution.pk), "streamConfig": config}),
        content_type="application/json",
    )
    assert response.status_code in (200, 201), response.content
    return Stream.objects.get(pk=response.json()["stream"]["id"])


def send(collector, value) -> None:
    collection_services.collected_batch_append(
        account_id=collector.account_id, collector_id=collector.pk, payload=json.dumps(value)
    )


@pytest.fixture
def victims_collector(other_account):
    return Collector.objects.create(account=other_account, name="victim", status=Collector.Status.ACTIVE)


def test_a_node_naming_another_accounts_collector_behaves_as_one_naming_an_unknown_id(
    api, account, victims_collector
):
    solution = solution_create(account=account, name="Attacker")
    foreign = import_through_the_api(api, solution, reader_config(victims_collector.pk, "Foreign"))
    unknown = import_through_the_api(api, solution, reader_config(uuid.uuid4(), "Unknown"))
    for value in range(3):
        send(victims_collector, [{"secret": value}])

    for stream in (foreign, unknown):
        # Never registered: no offset, so nothing to read and nothing that holds the log back.
        assert not ConsumerOffset.objects.filter(consumer=f"stream:{stream.pk}").exists()
        # Never woken by the victim's batches, nor caught up as "behind".
        assert str(stream.pk) not in realtime_readers(victims_collector.pk)
        assert str(stream.pk) not in realtime_streams_behind()
        # Run anyway (a task enqueued by hand): nothing read, nothing written, not even a run.
        assert engine_services.stream_run_collected(stream_id=stream.pk) is None
        assert not StreamRun.objects.filter(stream=stream).exists()
        assert not InspectRecord.objects.filter(stream=stream).exists()
    assert CollectedBatch.objects.filter(collector=victims_collector).count() == 3


def test_a_foreign_stream_is_not_woken_but_the_owners_own_stream_is(
    api, other_api, account, victims_collector
):
    """The control: the same configuration imported by the collector's owner reads the batches."""
    attacker = import_through_the_api(
        api, solution_create(account=account, name="Attacker"), reader_config(victims_collector.pk, "Foreign")
    )
    owner = import_through_the_api(
        other_api,
        solution_create(account=victims_collector.account, name="Owner"),
        reader_config(victims_collector.pk, "Own"),
    )
    send(victims_collector, [{"secret": 1}, {"secret": 2}])
    assert realtime_readers(victims_collector.pk) == [str(owner.pk)]
    run = engine_services.stream_run_collected(stream_id=owner.pk)
    assert (run.status, run.records_in) == ("SUCCEEDED", 2)
    assert engine_services.stream_run_collected(stream_id=attacker.pk) is None
    assert InspectRecord.objects.filter(stream=attacker).count() == 0
    assert InspectRecord.objects.filter(stream=owner).count() == 2


def test_the_victims_log_is_pruned_as_if_the_foreign_stream_did_not_exist(api, account, victims_collector):
    import_through_the_api(
        api, solution_create(account=account, name="Attacker"), reader_config(victims_collector.pk, "Foreign")
    )
    for value in range(4):
        send(victims_collector, {"n": value})
    later = timezone.now() + datetime.timedelta(hours=settings.COLLECTION_RETENTION_HOURS + 1)
    assert collection_services.collected_batches_prune(now=later) == 4
    assert not CollectedBatch.objects.filter(collector=victims_collector).exists()


def test_overwriting_and_deleting_the_foreign_stream_never_touches_the_victims_readers(
    api, other_api, account, victims_collector
):
    owner = import_through_the_api(
        other_api,
        solution_create(account=victims_collector.account, name="Owner"),
        reader_config(victims_collector.pk, "Own"),
    )
    # The attacker guesses the owner's consumer name: its stream id is not the owner's, and the
    # unregister of its own stream names only its own account's collectors.
    solution = solution_create(account=account, name="Attacker")
    attacker = import_through_the_api(api, solution, reader_config(victims_collector.pk, "Foreign"))
    response = api.post(
        "/streams/import",
        json.dumps(
            {
                "solutionId": str(solution.pk),
                "onNameConflict": "overwrite",
                "allowNodeDeletion": True,
                "streamConfig": reader_config(uuid.uuid4(), "Foreign"),
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    stream_delete(stream=Stream.objects.get(pk=attacker.pk))
    assert list(ConsumerOffset.objects.values_list("consumer", flat=True)) == [f"stream:{owner.pk}"]


def test_the_migration_drops_a_cross_account_reader_registered_before_the_fix(account, victims_collector):
    """A registration left by the old code (the stream of A reading B's collector) is removed by
    migration 0008; a stream's reader of its own account's collector stays."""
    solution = solution_create(account=account, name="Old")
    stream = Stream.objects.create(account=account, solution=solution, name="Old", cas=1)
    own_collector = Collector.objects.create(account=account, name="own", status=Collector.Status.ACTIVE)
    ConsumerOffset.objects.create(collector=victims_collector, consumer=f"stream:{stream.pk}")
    ConsumerOffset.objects.create(collector=own_collector, consumer=f"stream:{stream.pk}")
    ConsumerOffset.objects.create(collector=victims_collector, consumer="audit")  # not a stream's
    migration = importlib.import_module("streams.migrations.0008_drop_cross_account_consumers")
    migration.drop_cross_account_consumers(django_apps, None)
    assert sorted(ConsumerOffset.objects.values_list("collector__name", "consumer")) == [
        ("own", f"stream:{stream.pk}"),
        ("victim", "audit"),
    ]
