"""Each node type over a batch: outputs, drops and rejections with reasons, exact values."""

import datetime

import pytest
import time_machine

from streams.engine import services as engine_services
from streams.models import InspectRecord, StreamDedupKey
from tests.streams.engine.conftest import chain, execute, output, reasons

pytestmark = pytest.mark.django_db


def condition(field, type_, operator, value=None):
    item = {"field": field, "type": type_, "operator": operator}
    if value is not None:
        item["value"] = value
    return item


def filter_stream(make_stream, conditions, operator="AND"):
    return make_stream(chain(("keep", "filter", {"conditions": conditions, "operator": operator})))


# --- input ---------------------------------------------------------------------------------------


def test_the_collector_node_rejects_anything_but_objects(make_stream):
    stream = make_stream(chain(("peek", "inspect", {})))
    result = execute(stream, [{"a": 1}, "text", 3, [1]])
    assert output(result, "in") == [{"a": 1}]
    assert reasons(result, "in") == [
        ("text", "a record must be a JSON object"),
        (3, "a record must be a JSON object"),
        ([1], "a record must be a JSON object"),
    ]


# --- filter --------------------------------------------------------------------------------------


def test_filter_and_keeps_records_matching_every_condition(make_stream):
    stream = filter_stream(
        make_stream,
        [
            condition("status", "number", "lessThan", 500),
            condition("internal", "boolean", "equals", False),
            condition("path", "string", "startsWith", "/v1/"),
        ],
    )
    records = [
        {"id": 1, "status": 200, "internal": False, "path": "/v1/a"},
        {"id": 2, "status": 503, "internal": False, "path": "/v1/a"},
        {"id": 3, "status": 200, "internal": True, "path": "/v1/a"},
        {"id": 4, "status": 200, "internal": False, "path": "/v2/a"},
        {"id": 5, "status": "404", "internal": "false", "path": "/v1/b"},
    ]
    result = execute(stream, records)
    assert [record["id"] for record in output(result, "keep")] == [1, 5]
    assert result.result_for("keep").counts() == {"in": 5, "out": 2, "rejected": 0}


def test_filter_or_keeps_records_matching_any_condition(make_stream):
    stream = filter_stream(
        make_stream,
        [
            condition("plan", "string", "equals", "pro"),
            condition("seats", "number", "greaterThanOrEqual", 10),
        ],
        "OR",
    )
    records = [
        {"id": 1, "plan": "pro", "seats": 1},
        {"id": 2, "plan": "free", "seats": 10},
        {"id": 3, "plan": "free", "seats": 9.5},
        {"id": 4},
    ]
    assert [record["id"] for record in output(execute(stream, records), "keep")] == [1, 2]


@pytest.mark.parametrize(
    ("rule", "expected_ids"),
    [
        (condition("s", "string", "equals", "abc"), [1]),
        (condition("s", "string", "notEquals", "abc"), [2, 3, 4, 5]),
        (condition("s", "string", "contains", "b"), [1]),
        (condition("s", "string", "notContains", "b"), [2, 3, 4, 5]),
        (condition("s", "string", "startsWith", "ab"), [1]),
        (condition("s", "string", "endsWith", "YZ"), [2]),
        (condition("s", "string", "in", ["abc", "xYZ"]), [1, 2]),
        (condition("s", "string", "notIn", ["abc"]), [2, 3, 4, 5]),
        (condition("s", "string", "exists"), [1, 2, 3]),
        (condition("s", "string", "notExists"), [4, 5]),
        (condition("n", "number", "equals", 2), [1, 3]),
        (condition("n", "number", "notEquals", 2), [2, 4, 5]),
        (condition("n", "number", "greaterThan", 2), [2]),
        (condition("n", "number", "greaterThanOrEqual", 2), [1, 2, 3]),
        (condition("n", "number", "lessThan", 2.5), [1, 3]),
        (condition("n", "number", "lessThanOrEqual", 2), [1, 3]),
        (condition("n", "number", "in", [2, 7]), [1, 3]),
        (condition("n", "number", "notIn", [2]), [2, 4, 5]),
        (condition("b", "boolean", "equals", True), [1, 3]),
        (condition("b", "boolean", "notEquals", True), [2, 4, 5]),
        (condition("b", "boolean", "exists"), [1, 2, 3]),
        (condition("nested.v", "string", "equals", "x"), [2]),
    ],
)
def test_filter_operators_by_type(make_stream, rule, expected_ids):
    # Record 3 carries a numeric string for n and a string boolean; record 4 holds nulls; 5 lacks the fields.
    records = [
        {"id": 1, "s": "abc", "n": 2, "b": True},
        {"id": 2, "s": "xYZ", "n": 7.5, "b": False, "nested": {"v": "x"}},
        {"id": 3, "s": 12, "n": "2.0", "b": "TRUE"},
        {"id": 4, "s": None, "n": None, "b": None},
        {"id": 5},
    ]
    stream = filter_stream(make_stream, [rule])
    assert [record["id"] for record in output(execute(stream, records), "keep")] == expected_ids


# --- map -----------------------------------------------------------------------------------------


def test_map_sets_fields_from_expressions_on_a_copy(make_stream):
    stream = make_stream(
        chain(
            (
                "shape",
                "map",
                {
                    "fields": {
                        "userId": "record.customer.id",
                        "value": "1",
                        "plan": "has(record.customer.plan) ? record.customer.plan : 'free'",
                        "usage.kb": "record.bytes / 1024",
                    }
                },
            )
        )
    )
    records = [
        {"customer": {"id": "c1", "plan": "pro"}, "bytes": 4096, "usage": {"raw": True}},
        {"customer": {"id": "c2"}, "bytes": 10},
    ]
    result = execute(stream, records)
    assert output(result, "shape") == [
        {
            "customer": {"id": "c1", "plan": "pro"},
            "bytes": 4096,
            "usage": {"raw": True, "kb": 4},
            "userId": "c1",
            "value": 1,
            "plan": "pro",
        },
        {
            "customer": {"id": "c2"},
            "bytes": 10,
            "usage": {"kb": 0},
            "userId": "c2",
            "value": 1,
            "plan": "free",
        },
    ]
    assert records[0]["usage"] == {"raw": True}  # the input record is untouched


def test_map_rejects_a_record_whose_expression_fails(make_stream):
    stream = make_stream(chain(("shape", "map", {"fields": {"userId": "record.customer.id"}})))
    result = execute(
        stream, [{"customer": {"id": "c1"}}, {"account": "a"}, {"customer": {"id": "c3"}, "x": 1}]
    )
    assert output(result, "shape") == [
        {"customer": {"id": "c1"}, "userId": "c1"},
        {"customer": {"id": "c3"}, "x": 1, "userId": "c3"},
    ]
    assert reasons(result, "shape") == [
        ({"account": "a"}, "fields.userId: no such member in mapping: 'customer'")
    ]


def test_map_rejects_setting_a_field_inside_a_non_object(make_stream):
    stream = make_stream(chain(("shape", "map", {"fields": {"a.b": "1"}})))
    assert reasons(execute(stream, [{"a": 5}]), "shape") == [({"a": 5}, "cannot set a.b: a is not an object")]


# --- script --------------------------------------------------------------------------------------


def test_script_returns_a_new_record_keeps_drops_or_rejects(make_stream):
    stream = make_stream(
        chain(
            (
                "normalize",
                "script",
                {
                    "expression": "has(record.drop) ? !record.drop : {'userId': record.account, 'kwh': double(record.wh) / 1000.0}"
                },
            )
        )
    )
    records = [{"account": "a1", "wh": 1500}, {"drop": True}, {"drop": False, "keep": 1}, {"account": "a2"}]
    result = execute(stream, records)
    assert output(result, "normalize") == [{"userId": "a1", "kwh": 1.5}, {"drop": False, "keep": 1}]
    assert reasons(result, "normalize") == [({"account": "a2"}, "no such member in mapping: 'wh'")]
    assert result.result_for("normalize").counts() == {"in": 4, "out": 2, "rejected": 1}


def test_script_result_that_is_neither_map_nor_boolean_is_rejected(make_stream):
    stream = make_stream(chain(("normalize", "script", {"expression": "record.n * 2"})))
    assert reasons(execute(stream, [{"n": 2}]), "normalize") == [
        ({"n": 2}, "the script must return a map (the new record) or a boolean (keep or drop), not a number")
    ]


# --- deduplicate ---------------------------------------------------------------------------------


def dedup_stream(make_stream, window=3600):
    return make_stream(
        chain(("dedup", "deduplicate", {"keyFields": ["requestId", "customer.id"], "windowSeconds": window}))
    )


def test_deduplicate_drops_repeats_within_a_batch_and_rejects_unkeyed_records(make_stream):
    stream = dedup_stream(make_stream)
    records = [
        {"requestId": "r1", "customer": {"id": 1}, "n": 1},
        {"requestId": "r1", "customer": {"id": 1}, "n": 2},
        {"requestId": "r1", "customer": {"id": 2}, "n": 3},
        {"requestId": "r2", "n": 4},
        {"requestId": "r1", "customer": {"id": 1.0}, "n": 5},
    ]
    result = execute(stream, records)
    assert [record["n"] for record in output(result, "dedup")] == [1, 3]
    assert reasons(result, "dedup") == [({"requestId": "r2", "n": 4}, "key field customer.id is missing")]
    assert result.result_for("dedup").counts() == {"in": 5, "out": 2, "rejected": 1}


def test_deduplicate_remembers_keys_across_runs_until_the_window_passes(make_stream):
    stream = dedup_stream(make_stream, window=60)
    first = [{"requestId": "r1", "customer": {"id": 1}}, {"requestId": "r2", "customer": {"id": 1}}]
    with time_machine.travel(datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.UTC), tick=False):
        run = engine_services.stream_run_execute(stream_id=stream.pk, records=first)
        assert run.node_counts["dedup"] == {"in": 2, "out": 2, "rejected": 0}
    with time_machine.travel(datetime.datetime(2025, 1, 1, 12, 0, 59, tzinfo=datetime.UTC), tick=False):
        again = engine_services.stream_run_execute(
            stream_id=stream.pk, records=first + [{"requestId": "r3", "customer": {"id": 1}}]
        )
        assert again.node_counts["dedup"] == {"in": 3, "out": 1, "rejected": 0}
    with time_machine.travel(datetime.datetime(2025, 1, 1, 12, 1, 0, tzinfo=datetime.UTC), tick=False):
        # r1 and r2 were first seen at 12:00:00: their 60 s window is over; r3's (12:00:59) is not.
        later = engine_services.stream_run_execute(
            stream_id=stream.pk, records=first + [{"requestId": "r3", "customer": {"id": 1}}]
        )
        assert later.node_counts["dedup"] == {"in": 3, "out": 2, "rejected": 0}
    assert StreamDedupKey.objects.filter(stream=stream).count() == 3


# --- dataAggregator ------------------------------------------------------------------------------


AGGREGATIONS = [
    {"target": "bytes", "function": "sum", "field": "bytes"},
    {"target": "reports", "function": "count"},
    {"target": "smallest", "function": "min", "field": "bytes"},
    {"target": "largest", "function": "max", "field": "bytes"},
    {"target": "stats.average", "function": "avg", "field": "bytes"},
    {"target": "firstZone", "function": "first", "field": "zone"},
    {"target": "lastZone", "function": "last", "field": "zone"},
]


def test_data_aggregator_groups_the_batch_and_emits_one_record_per_key(make_stream):
    stream = make_stream(
        chain(
            (
                "per-bucket",
                "dataAggregator",
                {
                    "storeId": "d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09",
                    "keyFields": ["customerId", "bucket"],
                    "aggregations": AGGREGATIONS,
                },
            )
        )
    )
    records = [
        {"customerId": "c1", "bucket": "logs", "bytes": 100, "zone": "eu"},
        {"customerId": "c2", "bucket": "logs", "bytes": 7},
        {"customerId": "c1", "bucket": "logs", "bytes": 300, "zone": "us"},
        {"customerId": "c1", "bucket": "logs", "bytes": "many"},
        {"customerId": "c1", "bucket": "img", "bytes": 5.5, "zone": "ap"},
        {"customerId": "c1", "bytes": 1},
    ]
    result = execute(stream, records)
    assert output(result, "per-bucket") == [
        {
            "customerId": "c1",
            "bucket": "logs",
            "bytes": 400,
            "reports": 2,
            "smallest": 100,
            "largest": 300,
            "stats": {"average": 200.0},
            "firstZone": "eu",
            "lastZone": "us",
        },
        {
            "customerId": "c2",
            "bucket": "logs",
            "bytes": 7,
            "reports": 1,
            "smallest": 7,
            "largest": 7,
            "stats": {"average": 7.0},
            "firstZone": None,
            "lastZone": None,
        },
        {
            "customerId": "c1",
            "bucket": "img",
            "bytes": 5.5,
            "reports": 1,
            "smallest": 5.5,
            "largest": 5.5,
            "stats": {"average": 5.5},
            "firstZone": "ap",
            "lastZone": "ap",
        },
    ]
    assert reasons(result, "per-bucket") == [
        ({"customerId": "c1", "bucket": "logs", "bytes": "many"}, "field bytes must be a number"),
        ({"customerId": "c1", "bytes": 1}, "key field bucket is missing"),
    ]


# --- meter (routing, in previews: the ledger is tested in test_wiring.py) ---------------------------------------------


METER = {
    "meterKey": "api-calls",
    "guidingRules": [
        {
            "category": "premium",
            "conditionOperator": "OR",
            "conditions": [
                condition("plan", "string", "equals", "enterprise"),
                condition("plan", "string", "equals", "pro"),
            ],
        },
        {
            "category": "bulk",
            "conditionOperator": "AND",
            "conditions": [
                condition("plan", "string", "equals", "free"),
                condition("value", "number", "greaterThan", 100),
            ],
        },
        {"category": "standard", "conditions": [condition("plan", "string", "exists")]},
    ],
    "groupBy": ["region", "zone.name"],
}


def test_meter_routes_each_record_to_the_first_matching_guiding_rule(make_stream):
    stream = make_stream(chain(("meter", "meter", METER)))
    records = [
        {"userId": "u1", "value": 1, "plan": "pro", "region": "eu", "timestamp": "2023-07-01T02:00:00+02:00"},
        {"userId": "u2", "value": 500, "plan": "free", "timestamp": 1688169600000},
        {"userId": "u3", "value": "2.5", "plan": "free", "zone": {"name": "z1"}},
        {"userId": 42, "value": 3, "plan": "enterprise", "timestamp": "1688169600123"},
    ]
    routed = output(execute(stream, records, dry_run=True), "meter")
    assert [
        (record["userId"], record["value"], record.get("timestamp"), record["_meter"]) for record in routed
    ] == [
        (
            "u1",
            1,
            "2023-07-01T00:00:00.000Z",
            {
                "meterKey": "api-calls",
                "guidingRule": 0,
                "category": "premium",
                "groupsKey": "premium",
                "groupBy": {"region": "eu", "zone.name": None},
            },
        ),
        (
            "u2",
            500,
            "2023-07-01T00:00:00.000Z",
            {
                "meterKey": "api-calls",
                "guidingRule": 1,
                "category": "bulk",
                "groupsKey": "bulk",
                "groupBy": {"region": None, "zone.name": None},
            },
        ),
        (
            "u3",
            2.5,
            None,
            {
                "meterKey": "api-calls",
                "guidingRule": 2,
                "category": "standard",
                "groupsKey": "standard",
                "groupBy": {"region": None, "zone.name": "z1"},
            },
        ),
        (
            "42",
            3,
            "2023-07-01T00:00:00.123Z",
            {
                "meterKey": "api-calls",
                "guidingRule": 0,
                "category": "premium",
                "groupsKey": "premium",
                "groupBy": {"region": None, "zone.name": None},
            },
        ),
    ]


def test_meter_rejects_records_it_cannot_meter_with_the_reason(make_stream):
    stream = make_stream(chain(("meter", "meter", METER)))
    records = [
        {"value": 1, "plan": "pro"},
        {"userId": "", "value": 1, "plan": "pro"},
        {"userId": "u", "plan": "pro"},
        {"userId": "u", "value": "ten", "plan": "pro"},
        {"userId": "u", "value": True, "plan": "pro"},
        {"userId": "u", "value": 1, "plan": "pro", "timestamp": "2023-07-01T00:00:00"},
        {"userId": "u", "value": 1, "plan": "pro", "timestamp": "yesterday"},
        {"userId": "u", "value": 1},
    ]
    result = execute(stream, records)
    assert output(result, "meter") == []
    assert [reason for _, reason in reasons(result, "meter")] == [
        "userId is required (a non-empty string)",
        "userId is required (a non-empty string)",
        "value is required",
        "value must be a number",
        "value must be a number",
        "timestamp must be ISO 8601 with a timezone (2023-07-01T00:00:00Z) or Unix milliseconds",
        "timestamp must be ISO 8601 with a timezone (2023-07-01T00:00:00Z) or Unix milliseconds",
        "no guiding rule matches the record",
    ]


def test_a_meter_without_guiding_rules_counts_every_valid_record(make_stream):
    stream = make_stream(chain(("meter", "meter", {"meterKey": "all"})))
    routed = output(execute(stream, [{"userId": "u", "value": 2}], dry_run=True), "meter")
    assert routed == [
        {
            "userId": "u",
            "value": 2,
            "_meter": {
                "meterKey": "all",
                "guidingRule": None,
                "category": None,
                "groupsKey": "default",
                "groupBy": {},
            },
        }
    ]


# --- httpForwarder (its sending: test_deliveries.py) -------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.8/x",
        "http://169.254.169.254/latest",
        "http://[::1]:9/x",
        "http://100.64.0.1/x",
        "http://0.0.0.0/x",
    ],
)
def test_outbound_refuses_private_link_local_and_reserved_addresses(url, settings):
    from streams.engine import outbound

    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(outbound.OutboundRefused):
        outbound.target_validate(url)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http://user:pw@example.com/"])
def test_outbound_refuses_other_schemes_and_credentials(url, settings):
    from streams.engine import outbound

    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    with pytest.raises(outbound.OutboundRefused):
        outbound.target_validate(url)


# --- inspect -------------------------------------------------------------------------------------


def test_inspect_keeps_the_last_records_across_runs(make_stream):
    stream = make_stream(chain(("peek", "inspect", {"keepLast": 3})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"i": i} for i in range(5)])
    assert [row.record for row in InspectRecord.objects.filter(stream=stream)] == [
        {"i": 4},
        {"i": 3},
        {"i": 2},
    ]
    run = engine_services.stream_run_execute(stream_id=stream.pk, records=[{"i": 5}, {"i": 6}])
    assert [row.record for row in InspectRecord.objects.filter(stream=stream)] == [
        {"i": 6},
        {"i": 5},
        {"i": 4},
    ]
    assert {row.run_id for row in InspectRecord.objects.filter(stream=stream)[:2]} == {run.pk}
    assert run.node_counts["peek"] == {"in": 2, "out": 2, "rejected": 0}
