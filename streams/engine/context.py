"""What a node sees of the run it is part of: the stream, the clock, dry-run mode, parameters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from config.api.errors import ApiError

if TYPE_CHECKING:
    from streams.models import Stream, StreamRun


class NodeFailed(Exception):
    """A node could not do its work for the whole batch (a target down, a parameter missing).

    The run fails, its effects are rolled back and the records stay where they came from, so a
    retry processes them again. Messages never contain parameter values.
    """

    def __init__(self, node_id: str, message: str):
        self.node_id = node_id
        self.message = message
        super().__init__(f"node {node_id}: {message}")


@dataclass
class RunContext:
    """``dry_run``: compute everything, write nothing, send nothing (previews)."""

    account_id: uuid.UUID
    stream: Stream
    now: datetime
    dry_run: bool = False
    run: StreamRun | None = None
    # Where the run's records come from, stable across retries of the same work ("batch:<first
    # collected sequence>", else "run:<run id>"): the meter processor's idempotency keys use it.
    source_position: str = ""
    # Previews only: a ``time.monotonic()`` after which expressions are no longer evaluated (each
    # further record is rejected with the reason), so a preview answers within a few seconds.
    script_deadline: float | None = None
    _parameters: dict[str, str] = field(default_factory=dict, repr=False)

    def parameter(self, node_id: str, name: str) -> str:
        """A global parameter's value, resolved once per run (sensitive ones decrypted here, in
        memory only; never logged, stored or put into an error message)."""
        if name not in self._parameters:
            from parameters.services import parameter_resolve

            try:
                self._parameters[name] = parameter_resolve(account=self.account_id, name=name)
            except ApiError as exc:
                raise NodeFailed(node_id, f"global parameter '{name}': {exc.message}")
        return self._parameters[name]


@dataclass
class NodeOutput:
    """What a node made of a batch: records for the next nodes, and the ones it rejected (why)."""

    out: list[dict]
    rejected: list[tuple[Any, str]] = field(default_factory=list)
    note: str = ""  # what a preview should know about this node's output
