"""Whole-configuration validation: ids, edges, cycles, roles, groups, and every example."""

import json

import pytest

from streams.config import stream_config_parse
from streams.exceptions import InvalidStreamConfig
from streams.nodes import NODE_TYPES
from tests.streams.conftest import EXAMPLES_DIR, example, minimal_config


def details(config):
    with pytest.raises(InvalidStreamConfig) as caught:
        stream_config_parse(config)
    assert caught.value.status == 400
    assert caught.value.code == "VALIDATION_ERROR"
    return caught.value.details


def node(node_id, node_type="inspect", **config):
    return {"id": node_id, "name": node_id.title(), "type": node_type, "config": config}


def test_every_example_is_valid_and_together_they_cover_every_node_type():
    seen = set()
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        config = stream_config_parse(json.loads(path.read_text()))
        seen |= {node["type"] for node in config.nodes}
    assert seen == set(NODE_TYPES)


def test_defaults_of_a_minimal_config():
    config = stream_config_parse(minimal_config())
    assert (config.processing_type, config.schema_version, config.description, config.tag) == (
        "batch",
        1,
        "",
        None,
    )
    assert (config.node_groups, config.annotation) == ([], {})
    assert config.resource_refs() == {
        ("onlineCollector", "8a76066d-ff29-417c-a18e-abde22e44310"),
        ("meterKey", "count-key"),
    }


def test_duplicate_node_ids():
    assert details({"name": "S", "nodes": [node("a"), node("a")]}) == [
        {"field": "nodes[1].id", "message": "Duplicate node id 'a'."}
    ]


def test_dangling_edge():
    assert details({"name": "S", "nodes": [node("a")], "edges": [{"source": "a", "target": "ghost"}]}) == [
        {"field": "edges[0].target", "message": "No node with id 'ghost'."}
    ]


def test_cycle():
    config = {
        "name": "S",
        "nodes": [node("a"), node("b"), node("c")],
        "edges": [
            {"source": "a", "target": "b"},
            {"source": "b", "target": "c"},
            {"source": "c", "target": "a"},
        ],
    }
    assert details(config) == [{"field": "edges", "message": "The edges form a cycle: a -> b -> c -> a."}]


def test_self_loop_is_a_cycle():
    assert details({"name": "S", "nodes": [node("a")], "edges": [{"source": "a", "target": "a"}]}) == [
        {"field": "edges", "message": "The edges form a cycle: a -> a."}
    ]


def test_duplicate_edge():
    config = {
        "name": "S",
        "nodes": [node("a"), node("b")],
        "edges": [{"source": "a", "target": "b"}, {"source": "a", "target": "b"}],
    }
    assert details(config) == [{"field": "edges[1]", "message": "Duplicate edge a -> b."}]


def test_input_nodes_take_no_incoming_edges_and_outputs_give_no_outgoing_ones():
    collector = node("in", "onlineCollector", collectorId="8a76066d-ff29-417c-a18e-abde22e44310")
    forwarder = node("out", "httpForwarder", url="https://example.com")
    config = {
        "name": "S",
        "nodes": [collector, node("mid"), forwarder],
        "edges": [{"source": "mid", "target": "in"}, {"source": "out", "target": "mid"}],
    }
    assert details(config) == [
        {"field": "edges[0].target", "message": "Node 'in' is an input node and takes no incoming edges."},
        {"field": "edges[1].source", "message": "Node 'out' is an output node and has no outgoing edges."},
    ]


def test_bad_node_config_points_at_the_node():
    config = example("api-calls-metering")
    config["nodes"][4]["config"]["meterKey"] = "x" * 37
    config["nodes"][2]["config"]["fields"]["plan"] = "record.customer.plan ||"
    assert details(config) == [
        {
            "field": "nodes[2].config.fields.plan",
            "message": "Not a valid CEL expression: syntax error at line 1, column 22.",
        },
        {"field": "nodes[4].config.meterKey", "message": "Expected `str` of length <= 36"},
    ]


def test_unknown_node_type_and_missing_name():
    assert details({"name": "S", "nodes": [{"id": "a", "type": "magic"}]}) == [
        {"field": "nodes[0].name", "message": "A node name is 1 to 100 characters."},
        {
            "field": "nodes[0].type",
            "message": "Unknown node type; one of: onlineCollector, filter, map, script, "
            "deduplicate, meter, scriptAggregator, dataAggregator, "
            "httpForwarder, inspect.",
        },
    ]


def test_meter_keys_are_unique_within_a_stream():
    config = {"name": "S", "nodes": [node("a", "meter", meterKey="k"), node("b", "meter", meterKey="k")]}
    assert details(config) == [
        {"field": "nodes[1].config.meterKey", "message": "Meter key 'k' is used by nodes[0] too."}
    ]


def test_top_level_fields():
    assert details(
        {
            "nodes": [],
            "colour": "red",
            "processingType": "stream",
            "schemaVersion": 2,
            "tag": "bad tag",
            "annotation": [],
            "edges": {},
        }
    ) == [
        {"field": "colour", "message": "Unknown field."},
        {"field": "name", "message": "This field is required."},
        {"field": "processingType", "message": "Must be batch or realtime."},
        {"field": "schemaVersion", "message": "Supported schema versions: 1."},
        {
            "field": "tag",
            "message": "A tag is 1 to 100 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit.",
        },
        {"field": "annotation", "message": "Must be an object."},
        {"field": "edges", "message": "Must be a list."},
    ]
    assert details([]) == [{"field": "", "message": "The stream configuration must be an object."}]


def test_node_groups_name_existing_nodes():
    config = {
        "name": "S",
        "nodes": [node("a")],
        "nodeGroups": [{"id": "g", "nodeIds": ["a", "b"]}, {"id": "g", "nodeIds": [], "colour": 1}],
    }
    assert details(config) == [
        {"field": "nodeGroups[0].nodeIds[1]", "message": "No node with id 'b'."},
        {"field": "nodeGroups[1].colour", "message": "Unknown field."},
        {"field": "nodeGroups[1].id", "message": "Duplicate group id 'g'."},
    ]


def test_a_single_problem_is_the_message():
    with pytest.raises(InvalidStreamConfig) as caught:
        stream_config_parse({"name": "S", "nodes": [node("a"), node("a")]})
    assert caught.value.message == "nodes[1].id: Duplicate node id 'a'."
