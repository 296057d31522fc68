"""Runs are recorded with their counts; a preview shows each node and persists nothing."""

import datetime
import json
import uuid

import pytest
import time_machine

from streams.engine import services as engine_services
from streams.models import AggregationSession, InspectRecord, Stream, StreamDedupKey, StreamRun
from tests.streams.conftest import example
from tests.streams.engine.conftest import STORE_ID, chain

pytestmark = pytest.mark.django_db

T0 = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)

PIPELINE = chain(
    (
        "only-billable",
        "filter",
        {"conditions": [{"field": "status", "type": "number", "operator": "lessThan", "value": 500}]},
    ),
    ("shape", "map", {"fields": {"userId": "record.customer.id", "value": "1"}}),
    ("dedup", "deduplicate", {"keyFields": ["requestId"], "windowSeconds": 3600}),
    ("meter", "meter", {"meterKey": "calls"}),
    name="Pipeline",
)
RECORDS = [
    {"requestId": "r1", "status": 200, "customer": {"id": "c1"}},
    {"requestId": "r2", "status": 503, "customer": {"id": "c1"}},
    {"requestId": "r3", "status": 200, "account": "no customer"},
    {"requestId": "r1", "status": 200, "customer": {"id": "c1"}},
    {"requestId": "r4", "status": 201, "customer": {"id": "c2"}},
    "not an object",
]


def test_a_run_records_counts_per_node_and_rejections(make_stream, account):
    from metering.models import Meter
    from metering.services import meter_create, meter_type_create

    stream = make_stream(PIPELINE)
    with time_machine.travel(T0, tick=False):
        calls = meter_type_create(
            account_id=account.pk,
            name="Calls",
            unit="call",
            aggregation="SUM",
            reset_cron="0 0 1 * *",
            timezone="Etc/UTC",
            active_from=T0,
        )
        for user_id in ("c1", "c2"):
            meter_create(account_id=account.pk, meter_key="calls", user_id=user_id, meter_type_id=calls.pk)
        run = engine_services.stream_run_execute(stream_id=stream.pk, records=RECORDS)
    assert sorted(Meter.objects.values_list("user_id", "value", "record_count")) == [
        ("c1", 1, 1),
        ("c2", 1, 1),
    ]
    run.refresh_from_db()
    assert (run.account_id, run.stream_id, run.stream_cas, run.trigger, run.status) == (
        account.pk,
        stream.pk,
        1,
        "manual",
        "SUCCEEDED",
    )
    assert (run.started_at, run.finished_at, run.duration_seconds) == (T0, T0, 0.0)
    assert (run.records_in, run.records_out, run.records_rejected) == (6, 2, 2)
    assert run.node_counts == {
        "in": {"in": 6, "out": 5, "rejected": 1},
        "only-billable": {"in": 5, "out": 4, "rejected": 0},
        "shape": {"in": 4, "out": 3, "rejected": 1},
        "dedup": {"in": 3, "out": 2, "rejected": 0},
        "meter": {"in": 2, "out": 2, "rejected": 0},
    }
    assert run.rejections == [
        {"nodeId": "in", "reason": "a record must be a JSON object", "record": "not an object"},
        {
            "nodeId": "shape",
            "reason": "fields.userId: no such member in mapping: 'customer'",
            "record": {"requestId": "r3", "status": 200, "account": "no customer"},
        },
    ]
    assert (run.error, run.source_first_sequence, run.source_last_sequence) == ("", None, None)


def test_only_the_first_rejections_are_kept_on_the_run(make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    run = engine_services.stream_run_execute(stream_id=stream.pk, records=list(range(150)))
    assert (run.records_rejected, len(run.rejections)) == (150, StreamRun.REJECTIONS_KEPT)


def test_records_can_be_fed_to_chosen_input_nodes(make_stream):
    config = chain(("peek", "inspect", {}))
    config["nodes"].append(
        {
            "id": "second",
            "name": "Second",
            "type": "onlineCollector",
            "config": {"collectorId": str(uuid.uuid4())},
        }
    )
    config["edges"].append({"source": "second", "target": "peek"})
    stream = make_stream(config)
    both = engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}])
    assert both.node_counts["peek"] == {"in": 2, "out": 2, "rejected": 0}
    one = engine_services.stream_run_execute(
        stream_id=stream.pk, records=[{"a": 1}], input_node_ids=["second"]
    )
    assert (one.records_in, one.node_counts) == (
        1,
        {"second": {"in": 1, "out": 1, "rejected": 0}, "peek": {"in": 1, "out": 1, "rejected": 0}},
    )


def test_input_nodes_and_triggers_are_checked_before_a_run_starts(make_stream):
    from config.api.errors import ValidationFailed

    stream = make_stream(chain(("peek", "inspect", {})))
    with pytest.raises(ValidationFailed, match="'peek' is not an input node of the stream"):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}], input_node_ids=["peek"])
    with pytest.raises(ValueError, match="not a run trigger: 'preview'"):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}], trigger="preview")
    assert StreamRun.objects.count() == 0


def test_a_stream_that_cannot_run_records_a_failed_run(make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    Stream.objects.filter(pk=stream.pk).update(
        nodes=[
            *stream.nodes[:1],
            {"id": "peek", "name": "Peek", "type": "inspect", "config": {"keepLast": 0}},
        ]
    )
    run = engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}])
    assert run.status == "FAILED"
    assert run.error.startswith("node peek: keepLast: Expected `int` >= 1")


def test_an_unknown_stream_is_404():
    from streams.exceptions import StreamNotFound

    with pytest.raises(StreamNotFound):
        engine_services.stream_run_execute(stream_id=uuid.uuid4(), records=[])


def test_without_collected_batches_a_collected_run_does_nothing_and_records_nothing(make_stream):
    stream = make_stream(example("api-calls-metering"))
    assert engine_services.stream_run_collected(stream_id=stream.pk) is None
    assert StreamRun.objects.count() == 0


def test_collected_batches_become_records(make_stream):
    from streams.engine.collection_seam import batch_records

    assert batch_records({"a": 1}) == [{"a": 1}]
    assert batch_records([{"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]
    assert batch_records('{"a": 1}\n\n[{"a": 2}, {"a": 3}]\nnot json\n') == [
        {"a": 1},
        {"a": 2},
        {"a": 3},
        "not json",
    ]


# --- POST /streams/{id}/preview -----------------------------------------------------------------------


def preview(api, stream, body):
    return api.post(f"/streams/{stream.pk}/preview", body, format="json")


def engine_rows() -> dict[str, int]:
    return {
        "runs": StreamRun.objects.count(),
        "sessions": AggregationSession.objects.count(),
        "dedup": StreamDedupKey.objects.count(),
        "inspect": InspectRecord.objects.count(),
    }


def test_preview_answers_each_nodes_output_rejections_and_counts(api, make_stream):
    stream = make_stream(PIPELINE)
    response = preview(api, stream, {"records": RECORDS})
    assert response.status_code == 200
    body = response.json()
    assert body["counts"] == {"in": 6, "out": 2, "rejected": 2}
    assert [(node["id"], node["type"], node["counts"]) for node in body["nodes"]] == [
        ("in", "onlineCollector", {"in": 6, "out": 5, "rejected": 1}),
        ("only-billable", "filter", {"in": 5, "out": 4, "rejected": 0}),
        ("shape", "map", {"in": 4, "out": 3, "rejected": 1}),
        ("dedup", "deduplicate", {"in": 3, "out": 2, "rejected": 0}),
        ("meter", "meter", {"in": 2, "out": 2, "rejected": 0}),
    ]
    shape = body["nodes"][2]
    assert shape["rejections"] == [
        {
            "record": {"requestId": "r3", "status": 200, "account": "no customer"},
            "reason": "fields.userId: no such member in mapping: 'customer'",
        }
    ]
    meter = body["nodes"][4]
    assert [record["requestId"] for record in meter["records"]] == ["r1", "r4"]
    assert meter["note"] == "preview: routed only; nothing is metered"
    assert meter["records"][0]["_meter"] == {
        "meterKey": "calls",
        "guidingRule": None,
        "category": None,
        "groupsKey": "default",
        "groupBy": {},
    }


def test_preview_persists_nothing(api, make_stream, receiver, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    stream = make_stream(
        chain(
            ("dedup", "deduplicate", {"keyFields": ["id"], "windowSeconds": 60}),
            ("peek", "inspect", {}),
            (
                "sessions",
                "scriptAggregator",
                {
                    "storeId": STORE_ID,
                    "keyFields": ["id"],
                    "timeoutSeconds": 60,
                    "script": "{'n': has(session.n) ? session.n + 1 : 1}",
                },
            ),
            ("meter", "meter", {"meterKey": "m"}),
            ("out", "httpForwarder", {"url": receiver.url}),
        )
    )
    before = engine_rows()
    first = preview(api, stream, {"records": [{"id": 1}, {"id": 1}, {"id": 2}]}).json()
    second = preview(api, stream, {"records": [{"id": 1}, {"id": 2}]}).json()
    assert engine_rows() == before == {"runs": 0, "sessions": 0, "dedup": 0, "inspect": 0}
    assert receiver.requests == []
    # Nothing remembered between previews: the same records pass deduplication again.
    assert [node["counts"] for node in first["nodes"] if node["id"] == "dedup"] == [
        {"in": 3, "out": 2, "rejected": 0}
    ]
    assert [node["counts"] for node in second["nodes"] if node["id"] == "dedup"] == [
        {"in": 2, "out": 2, "rejected": 0}
    ]
    sessions = next(node for node in first["nodes"] if node["id"] == "sessions")
    assert sessions["records"] == [{"n": 1, "id": 1}, {"n": 1, "id": 2}]
    out = next(node for node in first["nodes"] if node["id"] == "out")
    assert out["note"] == "preview: nothing is sent"


def test_preview_of_a_tagged_version(api, make_stream):
    make_stream(
        chain(
            (
                "keep",
                "filter",
                {"conditions": [{"field": "a", "type": "number", "operator": "equals", "value": 1}]},
            )
        )
        | {"tag": "v1"}
    )
    stream = make_stream(
        chain(
            (
                "keep",
                "filter",
                {"conditions": [{"field": "a", "type": "number", "operator": "equals", "value": 2}]},
            )
        ),
        on_name_conflict="overwrite",
    )
    records = {"records": [{"a": 1}, {"a": 2}]}
    latest = preview(api, stream, records).json()
    tagged = preview(api, stream, records | {"tag": "v1"}).json()
    assert latest["nodes"][1]["records"] == [{"a": 2}] and tagged["nodes"][1]["records"] == [{"a": 1}]
    missing = preview(api, stream, records | {"tag": "nope"})
    assert (missing.status_code, missing.json()["code"]) == (404, "STREAM_VERSION_NOT_FOUND")


@pytest.mark.parametrize(
    "body",
    [
        {"records": [{"a": 1}] * 1001},
        {"records": []},
        {"records": {"a": 1}},
        {},
        {"records": [{"a": 1}], "extra": 1},
    ],
)
def test_preview_validates_its_body(api, make_stream, body):
    stream = make_stream(chain(("peek", "inspect", {})))
    response = preview(api, stream, body)
    assert (response.status_code, response.json()["code"]) == (400, "VALIDATION_ERROR")


def test_preview_accepts_exactly_1000_records(api, make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    assert preview(api, stream, {"records": [{"i": i} for i in range(1000)]}).json()["counts"]["in"] == 1000


def test_preview_of_another_accounts_stream_is_404(other_api, make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    response = preview(other_api, stream, {"records": [{"a": 1}]})
    assert (response.status_code, response.json()["code"]) == (404, "STREAM_NOT_FOUND")


def test_preview_needs_a_stream_scope(client_factory, account, make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    for scope, status in (
        ("stream-management:read:streams", 200),
        ("stream-management:write:streams", 200),
        ("write:streams", 200),
        ("aggregation:read:sessions", 403),
    ):
        client = client_factory(account, scopes=[scope], name=scope)
        assert preview(client, stream, {"records": [{"a": 1}]}).status_code == status, scope


def test_preview_of_a_stream_that_cannot_run_is_400(api, make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    Stream.objects.filter(pk=stream.pk).update(
        nodes=[*stream.nodes[:1], {"id": "peek", "name": "Peek", "type": "nothing", "config": {}}]
    )
    response = preview(api, stream, {"records": [{"a": 1}]})
    assert (response.status_code, response.json()["code"]) == (400, "STREAM_NOT_RUNNABLE")


# --- Runs over the real collection log -----------------------------------------------------------------


class CollectionLog:
    """The collector ``COLLECTOR_ID`` (ACTIVE) and its real batch log."""

    def __init__(self, account):
        from collection.models import Collector
        from tests.streams.engine.conftest import COLLECTOR_ID

        self.account = account
        self.collector = Collector.objects.create(
            id=uuid.UUID(COLLECTOR_ID), account=account, name="engine-log", status=Collector.Status.ACTIVE
        )

    def append(self, data) -> int:
        from collection.models import CollectedBatch
        from collection.services import collected_batch_append

        result = collected_batch_append(
            account_id=self.account.pk, collector_id=self.collector.pk, payload=json.dumps(data)
        )
        return CollectedBatch.objects.get(ingestion_id=result.ingestion_id).sequence

    def offset(self, stream) -> int:
        from collection.models import ConsumerOffset

        return ConsumerOffset.objects.get(
            collector=self.collector, consumer=f"stream:{stream.pk}"
        ).last_sequence


@pytest.fixture
def collection_log(account):
    return CollectionLog(account)


def test_a_collected_run_consumes_batches_in_order_and_advances_the_offset(collection_log, make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    log = collection_log
    first = log.append({"a": 1})
    second = log.append([{"a": 2}, {"a": 3}])
    third = log.append('{"a": 4}\n{"a": 5}')
    assert log.offset(stream) == 0  # registered from the earliest batch when imported
    run = engine_services.stream_run_collected(stream_id=stream.pk, batch_limit=2)
    assert (run.trigger, run.records_in, run.source_first_sequence, run.source_last_sequence) == (
        "realtime",
        3,
        first,
        second,
    )
    assert log.offset(stream) == second
    again = engine_services.stream_run_collected(stream_id=stream.pk, batch_limit=2)
    assert (again.records_in, again.source_first_sequence, again.source_last_sequence) == (2, third, third)
    assert engine_services.stream_run_collected(stream_id=stream.pk) is None
    assert log.offset(stream) == third


def test_a_failed_collected_run_leaves_the_offset_for_the_retry(collection_log, make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    configured = stream.nodes
    # A stored configuration that cannot run (a node of no known type) fails every run before it reads.
    Stream.objects.filter(pk=stream.pk).update(nodes=[*configured[:1], {**configured[1], "type": "gone"}])
    sequence = collection_log.append({"a": 1})
    failed = engine_services.stream_run_collected(stream_id=stream.pk)
    assert (failed.status, failed.source_first_sequence, collection_log.offset(stream)) == ("FAILED", None, 0)
    Stream.objects.filter(pk=stream.pk).update(nodes=configured)
    assert engine_services.stream_run_collected(stream_id=stream.pk) is None  # backing off for 5 s
    with time_machine.travel(failed.finished_at + datetime.timedelta(seconds=5.1)):
        retried = engine_services.stream_run_collected(stream_id=stream.pk)
    assert (retried.status, retried.records_out, retried.source_first_sequence) == ("SUCCEEDED", 1, sequence)
    assert collection_log.offset(stream) == sequence


EXAMPLE_RECORDS = {
    "api-calls-metering": [
        {
            "requestId": "r1",
            "status": 200,
            "internal": False,
            "path": "/v1/items",
            "customer": {"id": "c1", "plan": "pro"},
            "region": "eu",
        },
        {
            "requestId": "r1",
            "status": 200,
            "internal": False,
            "path": "/v1/items",
            "customer": {"id": "c1", "plan": "pro"},
            "region": "eu",
        },
        {"requestId": "r2", "status": 200, "internal": False, "path": "/v1/items", "customer": {"id": "c2"}},
        {"requestId": "r3", "status": 500, "internal": False, "path": "/v1/items", "customer": {"id": "c3"}},
    ],
    "session-metering": [
        {"charger": "ch-7", "session": "s-1", "wh": 1500, "account": "u1"},
        {"charger": "ch-7", "session": "s-1", "wh": 500, "account": "u1"},
    ],
    "daily-storage-batch": [
        {"customerId": "c1", "bucket": "logs-archive", "bytes": 2147483648},
        {"customerId": "c1", "bucket": "logs-archive", "bytes": 1073741824},
        {"customerId": "c2", "bucket": "hot", "bytes": 536870912},
    ],
}


def test_the_documented_example_streams_preview_end_to_end(api, make_stream):
    bodies = {}
    for name, records in EXAMPLE_RECORDS.items():
        stream = make_stream(example(name))
        bodies[name] = preview(api, stream, {"records": records}).json()
    calls = {node["id"]: node for node in bodies["api-calls-metering"]["nodes"]}
    assert [
        calls[node]["counts"]["out"]
        for node in ("collector", "only-billable", "shape", "dedup", "meter", "billing", "peek")
    ] == [4, 3, 3, 2, 2, 2, 2]
    assert [
        (r["userId"], r["_meter"]["category"], r["_meter"]["groupBy"]) for r in calls["meter"]["records"]
    ] == [("c1", "premium", {"region": "eu"}), ("c2", "standard", {"region": None})]
    sessions = {node["id"]: node for node in bodies["session-metering"]["nodes"]}
    assert sessions["sessions"]["records"] == [
        {"userId": "u1", "value": 2.0, "chargerId": "ch-7", "sessionId": "s-1"}
    ]
    assert sessions["kwh"]["records"][0]["_meter"]["groupBy"] == {"chargerId": "ch-7"}
    storage = {node["id"]: node for node in bodies["daily-storage-batch"]["nodes"]}
    assert [(r["userId"], r["value"], r["_meter"]["category"]) for r in storage["storage"]["records"]] == [
        ("c1", 2.0, "archive"),
        ("c2", 0.5, "hot"),
    ]


def test_preview_is_rate_limited_in_the_streams_group(api, make_stream, rate_limits, settings):
    stream = make_stream(chain(("peek", "inspect", {})))
    assert settings.RATE_LIMITS["streams"] == (20, 1, 5)  # seed 000: 20 per second, burst 5
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "streams": (20, 60, 5)}  # no refill racing the test
    statuses = [preview(api, stream, {"records": [{"a": 1}]}).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_the_engine_endpoints_are_documented_in_openapi(client):
    paths = client.get("/openapi.json").json()["paths"]
    preview_operation = paths["/streams/{id}/preview"]["post"]
    lookup_operation = paths["/aggregation/stores/{id}/sessions/lookup"]["get"]
    assert {"200", "400", "401", "403", "404", "429"} <= set(preview_operation["responses"])
    assert {"200", "400", "401", "403", "404", "429"} <= set(lookup_operation["responses"])
    assert [p["name"] for p in lookup_operation["parameters"] if p["in"] != "header"] == ["fieldValues", "id"]


def test_the_api_calls_example_counts_while_its_forwarder_cannot_deliver(make_stream, account):
    """The documented example on a machine that cannot reach its billing system (and has no
    billing/api-token parameter): every run meters; the forwarder's deliveries wait in the outbox."""
    from metering.models import Meter
    from metering.services import meter_create, meter_type_create
    from streams.engine import deliveries
    from streams.models import OutputDelivery

    for category in ("premium", "standard"):
        meter_type = meter_type_create(
            account_id=account.pk,
            name=f"API calls {category}",
            unit="call",
            aggregation="SUM",
            reset_cron="0 0 1 * *",
            timezone="Etc/UTC",
            category=category,
        )
        for user in ("c1", "c2"):
            meter_create(
                account_id=account.pk, meter_key="api-calls", user_id=user, meter_type_id=meter_type.pk
            )
    stream = make_stream(example("api-calls-metering"))
    for _ in range(3):
        run = engine_services.stream_run_execute(
            stream_id=stream.pk, records=EXAMPLE_RECORDS["api-calls-metering"]
        )
        assert run.status == StreamRun.Status.SUCCEEDED
    counted = {
        (meter.user_id, meter.meter_type.category): meter.value
        for meter in Meter.objects.filter(account=account, value__gt=0).select_related("meter_type")
    }
    assert counted == {("c1", "premium"): 1, ("c2", "standard"): 1}  # the request ids deduplicate the reruns
    (waiting,) = OutputDelivery.objects.filter(stream=stream, node_id="billing")
    assert (waiting.status, waiting.record_count) == ("PENDING", 2)
    assert deliveries.output_deliveries_send(stream_id=stream.pk, node_id="billing").failed == 1
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts) == ("PENDING", 1)
    assert (
        waiting.last_error == "global parameter 'billing/api-token': Parameter 'billing/api-token' not found."
    )
