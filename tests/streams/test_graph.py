"""Topological order, cycle finding and the SVG drawing (streams.graph)."""

from streams.graph import (
    BOX_HEIGHT,
    BOX_WIDTH,
    GAP_X,
    MARGIN,
    find_cycle,
    layered_positions,
    layers,
    stream_graph_svg,
    topological_order,
)


def test_topological_order_is_stable_in_declared_order():
    edges = [("a", "c"), ("b", "c"), ("c", "d")]
    assert topological_order(["d", "c", "b", "a"], edges) == ["b", "a", "c", "d"]
    assert topological_order(["a", "b"], [("a", "b"), ("b", "a")]) is None


def test_find_cycle_handles_long_chains_without_recursion():
    ids = [f"n{i}" for i in range(5000)]
    chain = list(zip(ids, ids[1:], strict=False))
    assert find_cycle(ids, chain) == []
    assert find_cycle(ids, chain + [("n4999", "n4000")])[:2] == ["n4000", "n4001"]


def test_layers_are_longest_path_depths():
    assert layers(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("a", "c"), ("a", "d")]) == {
        "a": 0,
        "b": 1,
        "c": 2,
        "d": 1,
    }


def test_svg_draws_boxes_in_columns_and_arrows_along_edges():
    nodes = [
        {"id": "in", "name": "Input", "type": "onlineCollector"},
        {"id": "m", "name": "<script>Meter</script>", "type": "meter"},
    ]
    svg = stream_graph_svg(nodes, [{"source": "in", "target": "m"}])
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert svg.count('<g class="node"') == 2
    assert svg.count('<path class="edge"') == 1
    assert 'marker-end="url(#arrow)"' in svg
    assert "<script>" not in svg and "&lt;script&gt;Meter&lt;/script&gt;" in svg
    second_column_x = MARGIN + BOX_WIDTH + GAP_X
    assert f'<rect x="{second_column_x}" y="{MARGIN}"' in svg
    assert f'd="M {MARGIN + BOX_WIDTH} {MARGIN + BOX_HEIGHT // 2} C ' in svg
    assert svg.count(f'{second_column_x} {MARGIN + BOX_HEIGHT // 2}"') == 1
    assert ">onlineCollector</text>" in svg


def test_svg_of_an_empty_stream():
    assert stream_graph_svg([], []).count("<g ") == 0


def test_layers_order_rows_by_their_predecessors_and_centre_short_columns():
    # a and b feed x and y crosswise: y (fed by a, the first row) is placed above x.
    nodes = ["a", "b", "x", "y", "z"]
    edges = [("a", "y"), ("b", "x"), ("y", "z"), ("x", "z")]
    assert layered_positions(nodes, edges) == {
        "a": (0, 0),
        "b": (0, 2),
        "y": (1, 0),
        "x": (1, 2),
        "z": (2, 1),  # one node beside two: half a row down, centred
    }


def test_node_health_colours_the_boxes():
    nodes = [{"id": "in", "type": "onlineCollector"}, {"id": "m", "type": "meter"}]
    svg = stream_graph_svg(nodes, [{"source": "in", "target": "m"}], node_health={"in": "ok", "m": "failing"})
    assert '<g class="node node-ok" data-node-id="in" data-health="ok">' in svg
    assert '<g class="node node-failing" data-node-id="m" data-health="failing">' in svg
    assert 'fill="#fbe4e4" stroke="#b03a3a"' in svg
