"""Per-type node config validation (streams.nodes): what each type accepts, and where errors point."""

import uuid

import pytest

from streams.nodes import (
    NODE_TYPES,
    DataAggregatorConfig,
    FilterConfig,
    HttpForwarderConfig,
    InspectConfig,
    MeterConfig,
    NodeConfigInvalid,
    NodeRole,
    cel_parse_error,
    node_config_parse,
    parameter_references,
)

COLLECTOR_ID = "8a76066d-ff29-417c-a18e-abde22e44310"
STORE_ID = "5f0c2d1e-8b7a-4c3d-9e2f-1a0b9c8d7e6f"


def problems(node_type, config):
    with pytest.raises(NodeConfigInvalid) as caught:
        node_config_parse(node_type, config)
    return caught.value.problems


def test_the_registry_holds_every_node_type_with_its_role():
    assert {name: node_type.role for name, node_type in NODE_TYPES.items()} == {
        "onlineCollector": NodeRole.INPUT,
        "filter": NodeRole.PROCESSOR,
        "map": NodeRole.PROCESSOR,
        "script": NodeRole.PROCESSOR,
        "deduplicate": NodeRole.PROCESSOR,
        "meter": NodeRole.PROCESSOR,
        "scriptAggregator": NodeRole.PROCESSOR,
        "dataAggregator": NodeRole.PROCESSOR,
        "httpForwarder": NodeRole.OUTPUT,
        "inspect": NodeRole.PROCESSOR,
    }


def test_unknown_node_type():
    assert problems("teleport", {}) == [("", "Unknown node type 'teleport'.")]


def test_online_collector_needs_a_collector_uuid():
    parsed = node_config_parse("onlineCollector", {"collectorId": COLLECTOR_ID})
    assert parsed.collector_id == uuid.UUID(COLLECTOR_ID)
    assert parsed.resource_refs() == [("onlineCollector", COLLECTOR_ID)]
    assert problems("onlineCollector", {}) == [("collectorId", "This field is required.")]
    assert problems("onlineCollector", {"collectorId": "nope"}) == [("collectorId", "Invalid UUID")]
    assert problems("onlineCollector", {"collectorId": COLLECTOR_ID, "extra": 1}) == [
        ("extra", "Unknown field.")
    ]


def test_filter_conditions_are_typed_and_joined_by_and_or():
    parsed = node_config_parse("filter", {"conditions": [{"field": "a.b", "type": "number", "value": 3}]})
    assert isinstance(parsed, FilterConfig)
    assert (parsed.operator, parsed.conditions[0].operator) == ("AND", "equals")
    assert problems("filter", {"conditions": []}) == [("conditions", "Expected `array` of length >= 1")]
    assert problems(
        "filter", {"operator": "XOR", "conditions": [{"field": "a", "type": "string", "value": "x"}]}
    ) == [("operator", "Invalid enum value 'XOR'")]


@pytest.mark.parametrize(
    "condition,expected",
    [
        ({"field": "a", "type": "string", "value": 1}, ("conditions[0].value", "Must be a string.")),
        ({"field": "a", "type": "number", "value": True}, ("conditions[0].value", "Must be a number.")),
        ({"field": "a", "type": "boolean", "value": "true"}, ("conditions[0].value", "Must be a boolean.")),
        ({"field": "a", "type": "number"}, ("conditions[0].value", "This field is required.")),
        (
            {"field": "a", "type": "boolean", "operator": "greaterThan", "value": True},
            (
                "conditions[0].operator",
                "Operator must be one of equals, exists, notEquals, notExists for type boolean.",
            ),
        ),
        (
            {"field": "a", "type": "string", "operator": "exists", "value": "x"},
            ("conditions[0].value", "Operator exists takes no value."),
        ),
        (
            {"field": "a", "type": "number", "operator": "in", "value": [1, "2"]},
            ("conditions[0].value[1]", "Must be a number."),
        ),
        (
            {"field": "a", "type": "number", "operator": "in", "value": 1},
            ("conditions[0].value", "Operator in takes a list of 1 to 100 values."),
        ),
        (
            {"field": "a b", "type": "string", "value": "x"},
            ("conditions[0].field", "A field path is dot-separated names without spaces (e.g. customer.id)."),
        ),
        ({"field": "a", "type": "date", "value": "x"}, ("conditions[0].type", "Invalid enum value 'date'")),
    ],
)
def test_filter_condition_errors_point_at_the_condition(condition, expected):
    assert problems("filter", {"conditions": [condition]}) == [expected]


def test_valid_conditions_of_every_type():
    conditions = [
        {"field": "plan", "type": "string", "operator": "in", "value": ["pro", "team"]},
        {"field": "bytes", "type": "number", "operator": "greaterThanOrEqual", "value": 1.5},
        {"field": "trial", "type": "boolean", "value": False},
        {"field": "region", "type": "string", "operator": "notExists"},
    ]
    parsed = node_config_parse("filter", {"operator": "OR", "conditions": conditions})
    assert [c.operator for c in parsed.conditions] == ["in", "greaterThanOrEqual", "equals", "notExists"]


def test_map_expressions_must_parse_as_cel():
    assert node_config_parse("map", {"fields": {"total": "record.a + record.b"}}).fields == {
        "total": "record.a + record.b"
    }
    assert problems("map", {"fields": {"total": "record.a +"}}) == [
        ("fields.total", "Not a valid CEL expression: syntax error at line 1, column 10.")
    ]
    assert problems("map", {"fields": {}}) == [("fields", "Expected `object` of length >= 1")]
    assert problems("map", {"fields": {"a b": "1"}}) == [
        ("fields", "Key: A field path is dot-separated names without spaces (e.g. customer.id).")
    ]


def test_script_is_cel_never_python():
    assert (
        node_config_parse("script", {"expression": "{'v': record.x * 2}"}).expression == "{'v': record.x * 2}"
    )
    # Python statements are not CEL: the text is parsed by the CEL grammar, never by Python.
    assert problems("script", {"expression": "import os"}) == [
        ("expression", "Not a valid CEL expression: syntax error at line 1, column 8.")
    ]
    assert problems("script", {"expression": "[x for x in y]"}) == [
        ("expression", "Not a valid CEL expression: syntax error at line 1, column 4.")
    ]
    assert problems("script", {"expression": "lambda: 1"}) == [
        ("expression", "Not a valid CEL expression: syntax error at line 1, column 7.")
    ]
    assert problems("script", {}) == [("expression", "This field is required.")]


def test_cel_parse_error_is_none_for_valid_expressions():
    assert cel_parse_error("has(record.x) && record.x.startsWith('a') ? 1 : 2") is None
    assert cel_parse_error("(") == "Not a valid CEL expression: syntax error at line 1, column 1."


def test_deduplicate():
    parsed = node_config_parse("deduplicate", {"keyFields": ["id"], "windowSeconds": 60})
    assert (parsed.key_fields, parsed.window_seconds) == (["id"], 60)
    assert problems("deduplicate", {"keyFields": ["id"], "windowSeconds": 0}) == [
        ("windowSeconds", "Expected `int` >= 1")
    ]
    assert problems("deduplicate", {"keyFields": [], "windowSeconds": 5}) == [
        ("keyFields", "Expected `array` of length >= 1")
    ]


def test_meter_defaults_and_limits():
    parsed = node_config_parse("meter", {})
    assert parsed == MeterConfig(
        meter_key=None, guiding_rules=[], carry_first=[], carry_last=[], group_by=[], flush="periodEnd"
    )
    assert parsed.resource_refs() == []
    assert problems("meter", {"meterKey": "k" * 37}) == [("meterKey", "Expected `str` of length <= 36")]
    assert problems("meter", {"meterKey": "has space"}) == [
        ("meterKey", "A meter key is letters, digits, '_', '.' or '-'.")
    ]
    assert problems("meter", {"guidingRules": [{"category": f"c{i}"} for i in range(11)]}) == [
        ("guidingRules", "Expected `array` of length <= 10")
    ]
    assert problems("meter", {"flush": "hourly"}) == [("flush", "Invalid enum value 'hourly'")]
    assert problems("meter", {"carryLast": ["a", "a"]}) == [("carryLast", "Fields must not repeat.")]


def test_meter_guiding_rule_conditions_are_validated_in_place():
    config = {
        "meterKey": "k1",
        "guidingRules": [
            {"category": "a"},
            {
                "category": "b",
                "conditionOperator": "OR",
                "conditions": [
                    {"field": "x", "type": "string", "value": "1"},
                    {"field": "y", "type": "number", "value": "2"},
                ],
            },
        ],
    }
    assert problems("meter", config) == [("guidingRules[1].conditions[1].value", "Must be a number.")]
    assert problems("meter", {"guidingRules": [{"conditions": []}]}) == [
        ("guidingRules[0].category", "This field is required.")
    ]
    assert problems("meter", {"guidingRules": [{"category": "a", "conditionOperator": "NOR"}]}) == [
        ("guidingRules[0].conditionOperator", "Invalid enum value 'NOR'")
    ]


def test_script_aggregator():
    config = {"storeId": STORE_ID, "keyFields": ["a", "b"], "timeoutSeconds": 60, "script": "session"}
    parsed = node_config_parse("scriptAggregator", config)
    assert parsed.key_fields == ["a", "b"]
    assert parsed.resource_refs() == [("scriptAggregationStore", STORE_ID)]
    assert problems("scriptAggregator", {**config, "script": "session +"}) == [
        ("script", "Not a valid CEL expression: syntax error at line 1, column 9.")
    ]
    assert problems("scriptAggregator", {**config, "timeoutSeconds": "60"}) == [
        ("timeoutSeconds", "Expected `int`, got `str`")
    ]


def test_data_aggregator():
    config = {
        "storeId": STORE_ID,
        "keyFields": ["customer"],
        "aggregations": [
            {"target": "total", "function": "sum", "field": "bytes"},
            {"target": "n", "function": "count"},
        ],
    }
    parsed = node_config_parse("dataAggregator", config)
    assert isinstance(parsed, DataAggregatorConfig)
    assert parsed.resource_refs() == [("dataAggregationStore", STORE_ID)]
    bad = {
        **config,
        "aggregations": [{"target": "t", "function": "max"}, {"target": "t", "function": "count"}],
    }
    assert problems("dataAggregator", bad) == [
        ("aggregations[0].field", "Function max needs a field."),
        ("aggregations[1].target", "Targets must not repeat."),
    ]


def test_http_forwarder_urls_headers_and_parameter_references():
    config = {
        "url": "https://example.com/{{param:tenant/path}}",
        "headers": {"X-Key": "{{param:secrets/key}}"},
    }
    parsed = node_config_parse("httpForwarder", config)
    assert isinstance(parsed, HttpForwarderConfig)
    assert (parsed.method, parsed.timeout_seconds) == ("POST", 10)
    assert parsed.parameter_names() == ["secrets/key", "tenant/path"]
    assert node_config_parse("httpForwarder", {"url": "{{param:endpoint}}"}).url == "{{param:endpoint}}"
    assert problems("httpForwarder", {"url": "ftp://example.com"}) == [
        ("url", "Must be an http:// or https:// URL (or a {{param:name}} reference).")
    ]
    assert problems("httpForwarder", {"url": "https://x", "headers": {"Bad Name": "v"}}) == [
        ("headers.Bad Name", "Not a valid HTTP header name.")
    ]
    assert problems("httpForwarder", {"url": "https://x", "headers": {"A": "{{param:unclosed"}}) == [
        ("headers.A", "A parameter reference must be written {{param:name}}.")
    ]
    assert problems("httpForwarder", {"url": "https://x/{{param:bad name}}"}) == [
        ("url", "'bad name' is not a valid global parameter name.")
    ]
    assert problems("httpForwarder", {"url": "https://x", "headers": {"A": "a\nb"}}) == [
        ("headers.A", "Header values must not contain line breaks.")
    ]


def test_parameter_references():
    assert parameter_references("a {{param:x}} b {{param:y/z}}") == ["x", "y/z"]


def test_inspect_keeps_n_last_records():
    assert node_config_parse("inspect", {}) == InspectConfig(keep_last=10)
    assert problems("inspect", {"keepLast": 101}) == [("keepLast", "Expected `int` <= 100")]


def test_config_must_be_an_object():
    assert problems("inspect", [1]) == [("", "Expected `object`, got `array`")]
