"""Stream health (streams.engine.selectors.streams_health): healthy, lagging, output failing,
failing; lag in batches and seconds; consecutive failures; identical errors collapsed."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from collection.models import CollectedBatch
from streams.engine import deliveries
from streams.engine import services as engine_services
from streams.engine.selectors import account_streams_health, stream_health, streams_health
from streams.models import OutputDelivery, Stream
from tests.streams.engine.conftest import chain
from tests.streams.engine.test_runs import CollectionLog

pytestmark = pytest.mark.django_db

RETIRED = "node peek: : Unknown node type 'retired'."


def break_configuration(stream):
    """The stored configuration names a node type this version no longer has: every run fails."""
    Stream.objects.filter(pk=stream.pk).update(
        nodes=[stream.nodes[0], {**stream.nodes[1], "type": "retired"}]
    )


def test_a_new_stream_is_healthy(make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    health = stream_health(stream=stream)
    assert (health.state, health.lag_batches, health.lag_seconds, health.consecutive_failures) == (
        "healthy",
        0,
        0.0,
        0,
    )
    assert (health.last_error, health.errors, health.outbox_pending, health.outbox_dead) == ("", [], 0, 0)


def test_failed_runs_count_until_one_succeeds_and_identical_errors_collapse(make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    configured = stream.nodes
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}])
    break_configuration(stream)
    for _ in range(3):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}])
    health = stream_health(stream=stream)
    assert (health.state, health.consecutive_failures, health.last_error) == ("failing", 3, RETIRED)
    assert [(line.source, line.message, line.count) for line in health.errors] == [("run", RETIRED, 3)]

    Stream.objects.filter(pk=stream.pk).update(nodes=configured)
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}])
    health = stream_health(stream=stream)
    assert (health.state, health.consecutive_failures) == ("healthy", 0)
    assert [line.count for line in health.errors] == [3]  # still shown, as history


def test_an_output_failing_its_attempts_makes_the_stream_output_failing_while_it_counts(
    make_stream, receiver, private_targets_allowed
):
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    receiver.status = 503
    for value in (1, 2):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": value}])
    deliveries.output_deliveries_send(stream_id=stream.pk, node_id="out")
    OutputDelivery.objects.filter(stream=stream, status="PENDING").update(next_attempt_at=timezone.now())
    deliveries.output_deliveries_send(stream_id=stream.pk, node_id="out")
    health = stream_health(stream=stream)
    message = f"POST {receiver.url}: the target answered HTTP 503"
    assert (health.state, health.consecutive_failures, health.last_error) == ("output failing", 0, message)
    assert [(line.source, line.message, line.count) for line in health.errors] == [("out", message, 2)]
    assert (health.outbox_pending, health.outbox_dead) == (2, 0)
    assert health.outbox_oldest_pending_seconds >= 0

    receiver.status = 200
    OutputDelivery.objects.filter(stream=stream, status="PENDING").update(next_attempt_at=timezone.now())
    deliveries.output_deliveries_send(stream_id=stream.pk, node_id="out")
    health = stream_health(stream=stream)
    assert (health.state, health.errors, health.outbox_pending) == ("healthy", [], 0)


def test_a_dead_letter_keeps_the_output_failing_for_a_day(
    make_stream, receiver, private_targets_allowed, settings
):
    settings.STREAM_OUTPUT_MAX_ATTEMPTS = 1
    receiver.status = 500
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 1}])
    deliveries.output_deliveries_send(stream_id=stream.pk, node_id="out")
    assert (stream_health(stream=stream).state, stream_health(stream=stream).outbox_dead) == (
        "output failing",
        1,
    )
    later = timezone.now() + timedelta(hours=25)
    assert stream_health(stream=stream, now=later).state == "healthy"
    assert stream_health(stream=stream, now=later).outbox_dead == 1


def test_unconsumed_batches_older_than_the_warning_make_a_stream_lagging(account, make_stream, settings):
    settings.STREAM_LAG_WARNING_SECONDS = 60
    log = CollectionLog(account)
    stream = make_stream(chain(("peek", "inspect", {})) | {"processingType": "realtime"})
    first = log.append({"a": 1})
    log.append({"a": 2})
    received = CollectedBatch.objects.get(sequence=first).received_at
    with time_machine.travel(received + timedelta(seconds=30), tick=False):
        health = stream_health(stream=stream)
    assert (health.state, health.lag_batches, health.lag_seconds) == ("healthy", 2, 30.0)
    with time_machine.travel(received + timedelta(seconds=90), tick=False):
        health = stream_health(stream=stream)
    assert (health.state, health.lag_batches, health.lag_seconds) == ("lagging", 2, 90.0)
    engine_services.stream_run_collected(stream_id=stream.pk)
    assert (stream_health(stream=stream).lag_batches, stream_health(stream=stream).state) == (0, "healthy")


def test_a_batch_stream_may_lag_by_its_schedule_interval(account, make_stream, settings):
    settings.STREAM_LAG_WARNING_SECONDS = 60
    log = CollectionLog(account)
    stream = make_stream(chain(("peek", "inspect", {})) | {"annotation": {"scheduleIntervalSeconds": 600}})
    first = log.append({"a": 1})
    received = CollectedBatch.objects.get(sequence=first).received_at
    assert stream_health(stream=stream, now=received + timedelta(seconds=600)).state == "healthy"
    assert stream_health(stream=stream, now=received + timedelta(seconds=661)).state == "lagging"


def test_health_of_many_streams_takes_the_same_queries_as_of_one(
    make_stream, account, django_assert_num_queries
):
    streams = [make_stream(chain(("peek", "inspect", {}), name=f"S{index}")) for index in range(4)]
    for stream in streams:
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}])
    break_configuration(streams[2])
    engine_services.stream_run_execute(stream_id=streams[2].pk, records=[{"a": 1}])
    with django_assert_num_queries(4):
        one = streams_health(streams=streams[:1])
    with django_assert_num_queries(4):
        every = streams_health(streams=streams)
    assert one[streams[0].pk] == every[streams[0].pk]
    assert [
        (stream.name, health.state) for stream, health in account_streams_health(account_id=account.pk)
    ] == [
        ("S2", "failing"),
        ("S0", "healthy"),
        ("S1", "healthy"),
        ("S3", "healthy"),
    ]
