"""Records per second through the stream engine's pure-Python nodes, on one core.

    .venv/bin/python bench/stream_nodes.py [--records 50000] [--repeat 3]

Runs collector -> filter (3 conditions, AND) -> map (3 CEL fields: a path, a literal, a ternary
with has()) over a batch of records with the real runner (``plan_execute``), nothing written.
Printed beside it, as the ceiling to compare against: the same work hand-written as one Python
list comprehension (no engine, no CEL). Compare the ratio, not the absolute figures: the machine
is shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.utils import timezone  # noqa: E402

from streams.engine.context import RunContext  # noqa: E402
from streams.engine.plan import plan_build, plan_execute  # noqa: E402
from streams.models import Stream  # noqa: E402

FILTER = {
    "operator": "AND",
    "conditions": [
        {"field": "status", "type": "number", "operator": "lessThan", "value": 500},
        {"field": "internal", "type": "boolean", "operator": "equals", "value": False},
        {"field": "path", "type": "string", "operator": "startsWith", "value": "/v1/"},
    ],
}
MAP = {
    "fields": {
        "userId": "record.customer.id",
        "value": "1",
        "plan": "has(record.customer.plan) ? record.customer.plan : 'free'",
    }
}


def nodes(*chain):
    listed = [
        {"id": "in", "name": "In", "type": "onlineCollector", "config": {"collectorId": str(uuid.uuid4())}}
    ]
    listed += [
        {"id": node_id, "name": node_id, "type": node_type, "config": config}
        for node_id, node_type, config in chain
    ]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in zip(listed, listed[1:], strict=False)]
    return listed, edges


def records(count: int) -> list[dict]:
    return [
        {
            "requestId": f"r{i}",
            "status": 200 if i % 10 else 503,
            "internal": i % 17 == 0,
            "path": "/v1/items" if i % 5 else "/v2/items",
            "customer": {"id": f"c{i % 1000}", **({"plan": "pro"} if i % 3 else {})},
        }
        for i in range(count)
    ]


def engine_rate(chain, batch, repeat) -> tuple[float, int]:
    node_list, edges = nodes(*chain)
    stream = Stream(id=uuid.uuid4(), account_id=uuid.uuid4(), nodes=node_list, edges=edges)
    best, out = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        plan = plan_build(node_list, edges)  # per run, as a real run does (CEL compiled once, cached)
        context = RunContext(account_id=stream.account_id, stream=stream, now=timezone.now(), dry_run=True)
        result = plan_execute(plan, context, inputs={"in": batch})
        best = min(best, time.perf_counter() - started)
        out = result.records_out
    return len(batch) / best, out


def handwritten_rate(batch, repeat) -> tuple[float, int]:
    best, out = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = [
            {**r, "userId": r["customer"]["id"], "value": 1, "plan": r["customer"].get("plan", "free")}
            for r in batch
            if type(r) is dict
            and r.get("status") < 500
            and r.get("internal") is False
            and r.get("path", "").startswith("/v1/")
        ]
        best = min(best, time.perf_counter() - started)
        out = len(result)
    return len(batch) / best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    batch = records(args.records)
    print(f"{args.records} records per batch, best of {args.repeat}, one core")
    rows = [
        ("collector -> filter", engine_rate([("filter", "filter", FILTER)], batch, args.repeat)),
        ("collector -> map", engine_rate([("map", "map", MAP)], batch, args.repeat)),
        (
            "collector -> filter -> map",
            engine_rate([("filter", "filter", FILTER), ("map", "map", MAP)], batch, args.repeat),
        ),
        ("ceiling: hand-written filter+map", handwritten_rate(batch, args.repeat)),
    ]
    for label, (rate, out) in rows:
        print(f"{label:36s} {rate:12,.0f} records/s   ({out} out)")
    engine, ceiling = rows[2][1][0], rows[3][1][0]
    print(f"engine filter -> map at {engine / ceiling:.0%} of the hand-written ceiling")


if __name__ == "__main__":
    main()
