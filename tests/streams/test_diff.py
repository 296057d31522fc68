"""Comparing two configurations of a stream: nodes, edges, settings, and the unified diff."""

from streams.diff import FieldChange, field_changes, stream_config_diff
from tests.streams.conftest import example


def test_nodes_added_removed_and_changed_field_by_field():
    before = example("api-calls-metering") | {"tag": "v1"}
    after = example("api-calls-metering") | {"tag": "v2", "description": "Counts calls."}
    filter_node = next(node for node in after["nodes"] if node["id"] == "only-billable")
    filter_node["config"]["conditions"][0]["value"] = 400
    filter_node["name"] = "Successful calls only"
    after["nodes"] = [node for node in after["nodes"] if node["id"] != "peek"]
    after["edges"] = [edge for edge in after["edges"] if edge["target"] != "peek"]
    after["nodes"].append({"id": "audit", "name": "Audit", "type": "inspect", "config": {"keepLast": 5}})
    after["edges"].append({"source": "meter", "target": "audit"})

    diff = stream_config_diff(before, after, before_label="v1", after_label="v2")

    assert [(node.node_id, node.status) for node in diff.nodes] == [
        ("only-billable", "changed"),
        ("audit", "added"),
        ("peek", "removed"),
    ]
    assert diff.nodes[0].changes == [  # in the node's own order: name before config
        FieldChange(path="name", before='"Billable calls only"', after='"Successful calls only"'),
        FieldChange(path="config.conditions[0].value", before="500", after="400"),
    ]
    assert diff.counts() == {"added": 1, "removed": 1, "changed": 1}
    assert diff.edges_added == [("meter", "audit")]
    assert diff.edges_removed == [("dedup", "peek")]
    # The tag names the two sides; it is not a change between them.
    assert [change.path for change in diff.settings] == ["description"]
    assert not diff.is_empty
    kinds = {line.kind for line in diff.lines}
    assert kinds == {"header", "hunk", "added", "removed", "context"}
    assert [line.text for line in diff.lines[:2]] == ["--- v1", "+++ v2"]
    assert '-            "value": 500' in [line.text for line in diff.lines]
    assert '+            "value": 400' in [line.text for line in diff.lines]
    assert not any('"tag"' in line.text for line in diff.lines)


def test_the_same_configuration_under_two_tags_has_no_difference():
    diff = stream_config_diff(
        example("session-metering") | {"tag": "a"},
        example("session-metering") | {"tag": "b"},
        before_label="a",
        after_label="b",
    )
    assert diff.is_empty
    assert (diff.nodes, diff.edges_added, diff.edges_removed, diff.settings, diff.lines) == (
        [],
        [],
        [],
        [],
        [],
    )


def test_field_changes_name_leaves_present_on_one_side_only():
    assert field_changes({"a": {"b": 1}, "list": [1, 2]}, {"a": {"c": 1}, "list": [1]}) == [
        FieldChange(path="a.b", before="1", after=None),
        FieldChange(path="list[1]", before="2", after=None),
        FieldChange(path="a.c", before=None, after="1"),
    ]
    assert field_changes({"config": {}}, {"config": {"x": True}}) == [
        FieldChange(path="config", before="{}", after=None),
        FieldChange(path="config.x", before=None, after="true"),
    ]
