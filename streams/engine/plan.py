"""The runner: a stream's graph as an execution plan, executed node by node over a batch.

``plan_build`` turns the stored nodes and edges into runtimes (``streams.engine.runtimes``) using
the node registry's typed configs (``streams.nodes.node_config_parse``), in topological order
(``streams.graph``). ``plan_execute`` runs each node once over ALL the records it receives — the
concatenated outputs of its predecessors, in topological order — and keeps every node's output,
rejections and counts. Deterministic: the same records and state give the same result.

Records enter either at input nodes (``inputs``: the collected records) or as the output of a
node (``injected``: sessions a sweep emits from an aggregator); only nodes downstream of where
records entered run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.engine.context import NodeFailed, RunContext
from streams.engine.runtimes import RUNTIMES, NodeRuntime
from streams.graph import topological_order
from streams.nodes import NODE_TYPES, Config, NodeConfigInvalid, NodeRole, node_config_parse


@dataclass(frozen=True)
class PlanNode:
    id: str
    name: str
    type: str
    role: NodeRole
    config: Config
    runtime: NodeRuntime
    predecessors: tuple[str, ...]
    successors: tuple[str, ...]


@dataclass(frozen=True)
class StreamPlan:
    nodes: dict[str, PlanNode]
    order: tuple[str, ...]

    def input_node_ids(self) -> list[str]:
        return [node_id for node_id in self.order if self.nodes[node_id].role is NodeRole.INPUT]

    def nodes_of_type(self, node_type: str) -> list[PlanNode]:
        return [self.nodes[node_id] for node_id in self.order if self.nodes[node_id].type == node_type]


class PlanInvalid(Exception):
    """The stored configuration cannot run (it was valid when imported; the registry changed)."""


def plan_build(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> StreamPlan:
    node_ids = [node["id"] for node in nodes]
    pairs = [(edge["source"], edge["target"]) for edge in edges]
    order = topological_order(node_ids, pairs)
    if order is None:
        raise PlanInvalid("the edges form a cycle")
    position = {node_id: index for index, node_id in enumerate(order)}
    predecessors: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    successors: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    for source, target in pairs:
        predecessors[target].append(source)
        successors[source].append(target)
    planned: dict[str, PlanNode] = {}
    for node in nodes:
        node_id, node_type = node["id"], node["type"]
        try:
            config = node_config_parse(node_type, node.get("config", {}))
        except NodeConfigInvalid as exc:
            raise PlanInvalid(f"node {node_id}: {exc}")
        planned[node_id] = PlanNode(
            id=node_id,
            name=node.get("name") or node_id,
            type=node_type,
            role=NODE_TYPES[node_type].role,
            config=config,
            runtime=RUNTIMES[node_type](node_id, node.get("name") or node_id, config),
            predecessors=tuple(sorted(predecessors[node_id], key=position.__getitem__)),
            successors=tuple(sorted(successors[node_id], key=position.__getitem__)),
        )
    return StreamPlan(nodes=planned, order=tuple(order))


@dataclass
class Rejection:
    node_id: str
    record: Any
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"nodeId": self.node_id, "reason": self.reason, "record": self.record}


@dataclass
class NodeResult:
    node: PlanNode
    received: int
    out: list[dict]
    rejections: list[Rejection]
    note: str = ""
    injected: bool = False  # records entered here (emitted sessions); the node itself did not run

    def counts(self) -> dict[str, int]:
        return {"in": self.received, "out": len(self.out), "rejected": len(self.rejections)}


@dataclass
class RunResult:
    nodes: list[NodeResult] = field(default_factory=list)
    records_in: int = 0
    records_out: int = 0

    @property
    def records_rejected(self) -> int:
        return sum(len(result.rejections) for result in self.nodes)

    @property
    def rejections(self) -> list[Rejection]:
        return [rejection for result in self.nodes for rejection in result.rejections]

    def node_counts(self) -> dict[str, dict[str, int]]:
        return {result.node.id: result.counts() for result in self.nodes}

    def result_for(self, node_id: str) -> NodeResult | None:
        return next((result for result in self.nodes if result.node.id == node_id), None)


def plan_execute(
    plan: StreamPlan,
    context: RunContext,
    *,
    inputs: dict[str, list] | None = None,
    injected: dict[str, list[dict]] | None = None,
) -> RunResult:
    """Run the plan. ``inputs``: ``{input node id: records}``; ``injected``: ``{node id: records
    as that node's output}``. Raises ``NodeFailed`` when a node cannot complete."""
    inputs, injected = inputs or {}, injected or {}
    outputs: dict[str, list[dict]] = {}
    result = RunResult()
    for node_id in plan.order:
        node = plan.nodes[node_id]
        if node_id in injected:
            records = injected[node_id]
            outputs[node_id] = records
            result.records_in += len(records)
            result.nodes.append(NodeResult(node=node, received=0, out=records, rejections=[], injected=True))
            continue
        if node.role is NodeRole.INPUT:
            if node_id not in inputs:
                continue
            records = inputs[node_id]
            result.records_in += len(records)
        else:
            feeding = [outputs[predecessor] for predecessor in node.predecessors if predecessor in outputs]
            if not feeding:
                continue
            records = feeding[0] if len(feeding) == 1 else [record for batch in feeding for record in batch]
        output = node.runtime.process(records, context)
        outputs[node_id] = output.out
        result.nodes.append(
            NodeResult(
                node=node,
                received=len(records),
                out=output.out,
                note=output.note,
                rejections=[Rejection(node_id, record, reason) for record, reason in output.rejected],
            )
        )
    result.records_out = sum(
        len(outputs[node_id]) for node_id in outputs if not plan.nodes[node_id].successors
    )
    return result


__all__ = [
    "NodeFailed",
    "NodeResult",
    "PlanInvalid",
    "Rejection",
    "RunResult",
    "StreamPlan",
    "plan_build",
    "plan_execute",
]
