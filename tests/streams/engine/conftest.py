"""Fixtures for the stream engine: streams built from a few nodes, a real HTTP receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from streams import services
from streams.engine.context import RunContext
from streams.engine.plan import plan_build, plan_execute
from tests.streams.conftest import ACTOR

COLLECTOR_ID = "8a76066d-ff29-417c-a18e-abde22e44310"
STORE_ID = "5f0c2d1e-8b7a-4c3d-9e2f-1a0b9c8d7e6f"


def chain(*nodes: tuple[str, str, dict], name: str = "Engine test") -> dict:
    """A stream configuration: an online collector, then ``nodes`` ``(id, type, config)`` in a line."""
    all_nodes = [
        {"id": "in", "name": "In", "type": "onlineCollector", "config": {"collectorId": COLLECTOR_ID}}
    ]
    all_nodes += [
        {"id": node_id, "name": node_id.title(), "type": node_type, "config": config}
        for node_id, node_type, config in nodes
    ]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in zip(all_nodes, all_nodes[1:], strict=False)]
    return {"name": name, "nodes": all_nodes, "edges": edges}


@pytest.fixture
def make_stream(account, solution):
    """``make_stream(config)`` imports a configuration through the service and returns the stream."""

    def make(config, **options):
        return services.stream_import(
            account=account, solution_id=solution.pk, actor=ACTOR, stream_config=config, **options
        ).stream

    return make


def execute(stream, records, *, dry_run=False):
    """Run the stream's plan over ``records`` (fed to its input nodes) in the test's transaction."""
    plan = plan_build(stream.nodes, stream.edges)
    context = RunContext(account_id=stream.account_id, stream=stream, now=timezone.now(), dry_run=dry_run)
    return plan_execute(plan, context, inputs={node_id: records for node_id in plan.input_node_ids()})


def output(result, node_id):
    return result.result_for(node_id).out


def reasons(result, node_id):
    return [(rejection.record, rejection.reason) for rejection in result.result_for(node_id).rejections]


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.delay_seconds = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": json.loads(body or b"null"),
                        }
                    )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self) -> list:
        with self.lock:
            return [request["body"] for request in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def private_targets_allowed(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
