"""A stream's graph in a browser: every node can be seen or scrolled to, at the widths people use."""

import json

import pytest
from playwright.sync_api import expect

from accounts.models import Account
from streams import services as stream_services
from streams.engine import services as engine_services
from streams.models import Stream
from tests.ui.browser import overflowing, screenshot
from tests.ui.givens import STREAM_EXAMPLES, given_collector, metering_stream_config

pytestmark = pytest.mark.django_db(transaction=True)

# Each node's box against its scroll container: inside what is shown (visible) or inside what the
# container can scroll to (reachable); and the container inside the viewport.
_NODES = """() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll('svg.stream-graph g.node')].map(node => {
    const box = node.getBoundingClientRect();
    const frame = node.closest('.stream-graph-scroll');
    const shown = frame.getBoundingClientRect();
    const left = shown.left - frame.scrollLeft;
    return {
      id: node.dataset.nodeId,
      health: node.dataset.health || '',
      visible: box.left >= shown.left - 1 && box.right <= shown.right + 1,
      reachable: box.left >= left - 1 && box.right <= left + frame.scrollWidth + 1,
      frameInViewport: shown.left >= 0 && shown.right <= width + 1,
      scrolls: frame.scrollWidth > frame.clientWidth + 1,
    };
  });
}"""


def given_wide_stream(account: Account) -> Stream:
    """The API-calls example with its HTTP forwarder kept (so six layers deep), run once: its forwarder
    fails (it has nowhere to send), the rest went through."""
    collector = given_collector(account)
    config = metering_stream_config(collector)
    example = json.loads((STREAM_EXAMPLES / "api-calls-metering.json").read_text())
    config["nodes"] = [*config["nodes"], next(node for node in example["nodes"] if node["id"] == "billing")]
    config["edges"] = [*config["edges"], {"source": "meter", "target": "billing"}]
    config["name"] = "API calls metering, six layers deep"
    config["processingType"] = "batch"
    solution = stream_services.solution_create(account=account, name="Production")
    stream = stream_services.stream_import(
        account=account, solution_id=solution.pk, actor={"type": "user", "id": "setup"}, stream_config=config
    ).stream
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"usage": 1}, "not an object"])
    return stream


@pytest.mark.parametrize("width", [1280, 1440])
def test_every_node_of_the_graph_is_in_view_or_a_scroll_away(operator, width):
    page = operator.page
    stream = given_wide_stream(operator.account)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"/admin/streams/stream/{stream.pk}/change/")
    graph = page.locator("svg.stream-graph")
    expect(graph.locator("g.node")).to_have_count(len(stream.nodes))
    assert int(graph.get_attribute("data-width")) > 1100  # wider than the panel at 1280 px

    # Zoomed to fit (the default): every node is visible at once, nothing sticks out of the page.
    nodes = page.evaluate(_NODES)
    assert [node["id"] for node in nodes if not node["visible"]] == []
    assert all(node["frameInViewport"] for node in nodes)
    assert overflowing(page) == []
    # Colours from the last run: the input rejected the record that is not an object.
    health = {node["id"]: node["health"] for node in nodes}
    assert (health["collector"], health["only-billable"]) == ("warning", "ok")
    page.locator(".stream-graph-frame").scroll_into_view_if_needed()
    screenshot(page, f"stream-graph-{width}")

    # At actual size the graph is wider than its panel: it scrolls, and every node is reachable.
    page.click(".stream-graph-actual")
    nodes = page.evaluate(_NODES)
    assert [node["id"] for node in nodes if not node["reachable"]] == []
    assert all(node["frameInViewport"] for node in nodes)
    assert overflowing(page) == []
    if width == 1280:
        assert nodes[0]["scrolls"]
        page.locator(".stream-graph-scroll").evaluate("frame => { frame.scrollLeft = frame.scrollWidth; }")
        last = page.evaluate(_NODES)
        assert {node["id"]: node["visible"] for node in last}["billing"]

    # Zoom to fit brings it back.
    page.click(".stream-graph-fit")
    assert all(node["visible"] for node in page.evaluate(_NODES))


def test_the_graph_fits_with_the_sidebar_closed_too(operator):
    page = operator.page
    stream = given_wide_stream(operator.account)
    page.goto(f"/admin/streams/stream/{stream.pk}/change/")
    page.click("#toggle-nav-sidebar")
    assert all(node["visible"] for node in page.evaluate(_NODES))
    assert overflowing(page) == []
