"""Script and data aggregation sessions: keys, updates, timeouts emitted exactly once, lookup."""

import datetime
import json
import threading

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from streams.engine import deliveries
from streams.engine import services as engine_services
from streams.engine.keys import field_value_text, session_key
from streams.models import AggregationSession, AggregationStore, OutputDelivery, StreamRun
from tests.streams.engine.conftest import STORE_ID, chain, execute, output, reasons

pytestmark = pytest.mark.django_db

T0 = datetime.datetime(2025, 10, 27, 14, 4, 31, 648000, tzinfo=datetime.UTC)
SCRIPT = "{'userId': record.userId, 'value': (has(session.value) ? session.value : 0.0) + record.kwh}"


def session_stream(make_stream, *downstream, timeout=7200, name="Sessions"):
    return make_stream(
        chain(
            (
                "sessions",
                "scriptAggregator",
                {
                    "storeId": STORE_ID,
                    "keyFields": ["chargerId", "sessionId"],
                    "timeoutSeconds": timeout,
                    "script": SCRIPT,
                },
            ),
            *downstream,
            name=name,
        )
    )


def charge(charger, session, kwh, user="u1"):
    return {"chargerId": charger, "sessionId": session, "kwh": kwh, "userId": user}


def test_the_session_key_depends_on_the_order_of_the_values():
    assert session_key(["c1", "s1"]) != session_key(["s1", "c1"])
    assert session_key(["a,b", "c"]) != session_key(["a", "b,c"])
    assert session_key(["c1", "s1"]) == session_key(["c1", "s1"])
    assert [field_value_text(value) for value in ("x", 42, 42.0, 2.5, True, False)] == [
        "x",
        "42",
        "42",
        "2.5",
        "true",
        "false",
    ]


def test_the_script_updates_each_session_record_by_record(make_stream):
    stream = session_stream(make_stream)
    with time_machine.travel(T0, tick=False):
        run = engine_services.stream_run_execute(
            stream_id=stream.pk,
            records=[
                charge("c1", "s1", 1.5),
                charge("c1", "s2", 2.0),
                charge("c1", "s1", 0.25),
                {"chargerId": "c9"},
                charge("c2", "s1", "bad"),
            ],
        )
    assert run.node_counts["sessions"] == {"in": 5, "out": 0, "rejected": 2}
    assert [rejection["reason"] for rejection in run.rejections] == [
        "key field sessionId is missing",
        "found no matching overload for 'addition_add' applied to "
        "'(<class 'celpy.celtypes.DoubleType'>, <class 'celpy.celtypes.StringType'>)'",
    ]
    sessions = {tuple(s.field_values): s for s in AggregationSession.objects.all()}
    assert set(sessions) == {("c1", "s1"), ("c1", "s2")}  # c2/s1 never got a good record: no session
    first = sessions[("c1", "s1")]
    assert (first.data, first.meta) == ({"userId": "u1", "value": 1.75}, {"recordCount": 2})
    assert (first.created_at, first.updated_at, first.timeout_at) == (
        T0,
        T0,
        T0 + datetime.timedelta(hours=2),
    )
    assert first.key == session_key(["c1", "s1"])
    with time_machine.travel(T0 + datetime.timedelta(hours=1), tick=False):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[charge("c1", "s1", 1.0)])
    first.refresh_from_db()
    assert (first.data["value"], first.meta["recordCount"], first.created_at) == (2.75, 3, T0)
    # The timeout runs from the last update.
    assert first.timeout_at == T0 + datetime.timedelta(hours=3)


def test_a_timed_out_session_is_emitted_once_by_the_sweep(make_stream):
    stream = session_stream(make_stream, ("peek", "inspect", {}))
    with time_machine.travel(T0, tick=False):
        engine_services.stream_run_execute(
            stream_id=stream.pk, records=[charge("c1", "s1", 1.5), charge("c1", "s2", 3.0)]
        )
        assert engine_services.session_timeouts_sweep().sessions_emitted == 0
    with time_machine.travel(T0 + datetime.timedelta(hours=2), tick=False):
        result = engine_services.session_timeouts_sweep()
        again = engine_services.session_timeouts_sweep()
    assert (result.sessions_emitted, again.sessions_emitted, again.runs) == (2, 0, [])
    run = result.runs[0]
    assert (run.trigger, run.status, run.records_in, run.records_out) == (
        StreamRun.Trigger.SESSION_TIMEOUT,
        StreamRun.Status.SUCCEEDED,
        2,
        2,
    )
    assert run.node_counts == {
        "sessions": {"in": 0, "out": 2, "rejected": 0},
        "peek": {"in": 2, "out": 2, "rejected": 0},
    }
    emitted = sorted(
        (row.record for row in stream.inspect_records.all()), key=lambda record: record["sessionId"]
    )
    assert emitted == [
        {"userId": "u1", "value": 1.5, "chargerId": "c1", "sessionId": "s1"},
        {"userId": "u1", "value": 3.0, "chargerId": "c1", "sessionId": "s2"},
    ]
    assert AggregationSession.objects.count() == 0


def test_a_target_down_does_not_hold_timed_out_sessions_back_their_delivery_waits(
    make_stream, receiver, settings
):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    receiver.status = 500
    stream = session_stream(make_stream, ("out", "httpForwarder", {"url": receiver.url}))
    with time_machine.travel(T0, tick=False):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[charge("c1", "s1", 1.5)])
    with time_machine.travel(T0 + datetime.timedelta(hours=3), tick=False):
        swept = engine_services.session_timeouts_sweep()
    assert ([run.status for run in swept.runs], AggregationSession.objects.count()) == (
        [StreamRun.Status.SUCCEEDED],
        0,
    )
    assert deliveries.output_deliveries_send(stream_id=stream.pk, node_id="out").failed == 1
    receiver.status = 200
    OutputDelivery.objects.update(next_attempt_at=timezone.now())
    assert deliveries.output_deliveries_send(stream_id=stream.pk, node_id="out").delivered == 1
    assert receiver.bodies() == [[{"userId": "u1", "value": 1.5, "chargerId": "c1", "sessionId": "s1"}]] * 2


def test_a_run_that_meets_a_timed_out_session_emits_it_and_starts_a_new_one(make_stream):
    stream = session_stream(make_stream, ("peek", "inspect", {}), timeout=60)
    with time_machine.travel(T0, tick=False):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[charge("c1", "s1", 1.0)])
    with time_machine.travel(T0 + datetime.timedelta(seconds=61), tick=False):
        run = engine_services.stream_run_execute(stream_id=stream.pk, records=[charge("c1", "s1", 5.0)])
    assert run.node_counts["sessions"] == {"in": 1, "out": 1, "rejected": 0}
    assert [row.record["value"] for row in stream.inspect_records.all()] == [1.0]
    session = AggregationSession.objects.get()
    assert (session.data["value"], session.created_at) == (5.0, T0 + datetime.timedelta(seconds=61))


def test_data_aggregator_with_a_timeout_accumulates_across_runs(make_stream):
    stream = make_stream(
        chain(
            (
                "hourly",
                "dataAggregator",
                {
                    "storeId": "d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09",
                    "keyFields": ["customerId"],
                    "timeoutSeconds": 3600,
                    "aggregations": [
                        {"target": "bytes", "function": "sum", "field": "bytes"},
                        {"target": "mean", "function": "avg", "field": "bytes"},
                        {"target": "reports", "function": "count"},
                    ],
                },
            ),
            ("peek", "inspect", {}),
        )
    )
    with time_machine.travel(T0, tick=False):
        first = engine_services.stream_run_execute(
            stream_id=stream.pk,
            records=[{"customerId": "c1", "bytes": 10}, {"customerId": "c1", "bytes": 20}],
        )
    with time_machine.travel(T0 + datetime.timedelta(minutes=30), tick=False):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"customerId": "c1", "bytes": 60}])
    session = AggregationSession.objects.get()
    assert (session.data, session.meta) == (
        {"bytes": 90, "mean": 30.0, "reports": 3},
        {"recordCount": 3, "averages": {"mean": [90, 3]}},
    )
    # Emitted timeoutSeconds after the key's first record, not after the last.
    assert session.timeout_at == T0 + datetime.timedelta(hours=1)
    assert first.node_counts["hourly"] == {"in": 2, "out": 0, "rejected": 0}
    with time_machine.travel(T0 + datetime.timedelta(hours=1), tick=False):
        assert engine_services.session_timeouts_sweep().sessions_emitted == 1
    assert [row.record for row in stream.inspect_records.all()] == [
        {"customerId": "c1", "bytes": 90, "mean": 30.0, "reports": 3}
    ]


def test_a_preview_shows_sessions_as_they_would_be_emitted_and_writes_none(make_stream):
    stream = session_stream(make_stream)
    with time_machine.travel(T0, tick=False):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[charge("c1", "s1", 1.0)])
        result = execute(stream, [charge("c1", "s1", 2.0), charge("c3", "s3", 4.0)], dry_run=True)
    assert output(result, "sessions") == [
        {"userId": "u1", "value": 3.0, "chargerId": "c1", "sessionId": "s1"},
        {"userId": "u1", "value": 4.0, "chargerId": "c3", "sessionId": "s3"},
    ]
    assert (
        result.result_for("sessions").note
        == "preview: the sessions as they would be emitted when they time out"
    )
    assert [(s.field_values, s.data["value"]) for s in AggregationSession.objects.all()] == [
        (["c1", "s1"], 1.0)
    ]
    assert reasons(result, "sessions") == []


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_emit_a_timed_out_session_once(make_stream, receiver):
    stream = session_stream(make_stream, ("out", "httpForwarder", {"url": receiver.url}))
    with time_machine.travel(T0, tick=False):
        engine_services.stream_run_execute(
            stream_id=stream.pk, records=[charge("c1", f"s{i}", 1.0) for i in range(3)]
        )
    results, barrier = [], threading.Barrier(2)

    def sweep():
        barrier.wait()
        try:
            results.append(engine_services.session_timeouts_sweep().sessions_emitted)
        finally:
            connection.close()

    with time_machine.travel(T0 + datetime.timedelta(hours=2), tick=False):
        threads = [threading.Thread(target=sweep) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    # Each sweep claims with SKIP LOCKED: usually the first takes all three, but the second may
    # claim rows the first's scan had not locked yet. Either way every session is emitted once.
    assert sum(results) == 3 and len(results) == 2
    bodies = [json.loads(delivery.body) for delivery in OutputDelivery.objects.filter(stream=stream)]
    assert sorted(len(body) for body in bodies) == sorted(n for n in results if n)
    assert sum(len(body) for body in bodies) == 3
    assert len({json.dumps(record, sort_keys=True) for body in bodies for record in body}) == 3  # none twice
    assert AggregationSession.objects.count() == 0
    assert StreamRun.objects.filter(trigger=StreamRun.Trigger.SESSION_TIMEOUT).count() == len(
        [n for n in results if n]
    )


# --- GET /aggregation/stores/{id}/sessions/lookup ------------------------------------------------------


def lookup(api, values, store=STORE_ID):
    query = "&".join(f"fieldValues={value}" for value in values)
    return api.get(f"/aggregation/stores/{store}/sessions/lookup?{query}")


def error_code(response, status):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    return body["code"]


@pytest.fixture
def stored_session(make_stream):
    stream = session_stream(make_stream)
    with time_machine.travel(T0, tick=False):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[charge("c1", 42, 1.25)])
    return stream


def test_lookup_answers_the_session_for_values_in_key_field_order(api, stored_session):
    response = lookup(api, ["c1", "42"])
    assert response.status_code == 200
    assert response.json() == {
        "createdAt": "2025-10-27T14:04:31.648Z",
        "data": {"userId": "u1", "value": 1.25},
        "meta": {"recordCount": 1},
        "timeoutAt": "2025-10-27T16:04:31.648Z",
        "updatedAt": "2025-10-27T14:04:31.648Z",
    }


def test_lookup_with_values_in_another_order_finds_nothing(api, stored_session):
    assert error_code(lookup(api, ["42", "c1"]), 404) == "AGGREGATION_SESSION_NOT_FOUND"


def test_lookup_with_the_wrong_number_of_values_is_400(api, stored_session):
    body = lookup(api, ["c1"]).json()
    assert (body["code"], body["details"][0]["field"]) == ("VALIDATION_ERROR", "fieldValues")
    assert "keyed by 2 field(s) (chargerId, sessionId)" in body["message"]
    assert error_code(lookup(api, ["c1", "42", "x"]), 400) == "VALIDATION_ERROR"
    assert error_code(lookup(api, []), 400) == "VALIDATION_ERROR"


def test_lookup_in_an_unknown_or_malformed_store_is_404(api, stored_session):
    assert (
        error_code(lookup(api, ["c1", "42"], store="0b5c3f2e-6a43-4f7e-9a55-0d3f6f1c2a10"), 404)
        == "AGGREGATION_STORE_NOT_FOUND"
    )
    assert error_code(lookup(api, ["c1", "42"], store="not-a-uuid"), 404) == "AGGREGATION_STORE_NOT_FOUND"


def test_another_accounts_store_is_404(other_api, stored_session):
    assert error_code(lookup(other_api, ["c1", "42"]), 404) == "AGGREGATION_STORE_NOT_FOUND"


def test_lookup_needs_the_aggregation_scope(client_factory, account, stored_session):
    streams_only = client_factory(account, scopes=["stream-management:read:streams"], name="streams-only")
    assert error_code(lookup(streams_only, ["c1", "42"]), 403) == "INSUFFICIENT_SCOPE"
    sessions_only = client_factory(account, scopes=["aggregation:read:sessions"], name="sessions-only")
    assert lookup(sessions_only, ["c1", "42"]).status_code == 200


def test_lookup_is_rate_limited_in_the_aggregation_group(api, stored_session, rate_limits, settings):
    assert settings.RATE_LIMITS["aggregation"] == (50, 1, 5)  # seed 000: 50 per second, burst 5
    # The same group at 50 per minute, so the refill cannot race the test on a busy machine.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "aggregation": (50, 60, 5)}
    statuses = [lookup(api, ["c1", "42"]).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_a_store_is_registered_with_its_key_fields_on_import(make_stream, account):
    stream = session_stream(make_stream)
    store = AggregationStore.objects.get(account=account)
    assert (str(store.store_id), store.kind, store.key_fields, store.stream_id, store.node_id) == (
        STORE_ID,
        "script",
        ["chargerId", "sessionId"],
        stream.pk,
        "sessions",
    )
