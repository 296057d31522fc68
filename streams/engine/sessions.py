"""Aggregation sessions as the aggregator nodes use them within a run.

``SessionBook`` loads the sessions of a batch's keys in one query (locked ``FOR UPDATE``, in key
order so concurrent runs never deadlock), lets the node update each one, and writes them back in
one insert and one update. A session met after its ``timeout_at`` (the sweep has not reached it
yet) is emitted by this run instead and a new session starts for the key; the run holds its lock,
so it cannot be emitted twice. In a dry run nothing is locked or written and the node's output
shows the sessions as they would be emitted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.engine.context import NodeOutput, RunContext
from streams.engine.keys import KeyFieldInvalid
from streams.engine.records import MISSING, path_get, paths_set
from streams.models import AggregationSession, AggregationStore

KeyGroups = dict[str, tuple[list[Any], list[dict]]]


def group_by_key(records: list[dict], read_key: Callable) -> tuple[KeyGroups, list[tuple[Any, str]]]:
    """``{key: (field values, records in arrival order)}`` in order of first appearance."""
    groups: KeyGroups = {}
    rejected = []
    for record in records:
        try:
            values, key = read_key(record)
        except KeyFieldInvalid as exc:
            rejected.append((record, str(exc)))
            continue
        group = groups.get(key)
        if group is None:
            groups[key] = (values, [record])
        else:
            group[1].append(record)
    return groups, rejected


def emitted_record(key_fields: list[str], field_values: list[Any], data: dict, *, nested_data: bool) -> dict:
    """What leaves an aggregator for a session: its data plus its key fields.

    Script sessions: the script's map, with each key field added where the map lacks it. Data
    sessions: ``{target path: value}`` expanded into nested objects, plus the key fields."""
    if nested_data:
        assignments = [
            (tuple(name.split(".")), value) for name, value in zip(key_fields, field_values, strict=True)
        ]
        assignments += [(tuple(target.split(".")), value) for target, value in data.items()]
        return paths_set({}, assignments)
    missing = [
        (tuple(name.split(".")), value)
        for name, value in zip(key_fields, field_values, strict=True)
        if path_get(data, name) is MISSING
    ]
    return paths_set(data, missing) if missing else dict(data)


def session_emitted_record(session: AggregationSession, store: AggregationStore) -> dict:
    return emitted_record(
        store.key_fields,
        session.field_values,
        session.data,
        nested_data=store.kind == AggregationStore.Kind.DATA,
    )


@dataclass
class SessionState:
    key: str
    values: list[Any]
    data: dict
    meta: dict
    timeout_at: datetime | None
    model: AggregationSession | None
    touched: bool = False

    def update(self, data: dict, meta: dict, *, timeout_at: datetime) -> None:
        self.data, self.meta, self.timeout_at, self.touched = data, meta, timeout_at, True


@dataclass
class SessionBook:
    context: RunContext
    node_id: str
    store_id: uuid.UUID
    kind: str
    key_fields: list[str]
    store: AggregationStore | None = None
    existing: dict[str, AggregationSession] = field(default_factory=dict)
    states: list[SessionState] = field(default_factory=list)
    timed_out: list[AggregationSession] = field(default_factory=list)

    def load(self, keys: list[str]) -> None:
        from streams.engine.stores import aggregation_store_for_run

        self.store = aggregation_store_for_run(
            context=self.context,
            store_id=self.store_id,
            kind=self.kind,
            key_fields=self.key_fields,
            node_id=self.node_id,
        )
        if self.store is None or not keys:
            return
        queryset = AggregationSession.objects.filter(store=self.store, key__in=sorted(keys)).order_by("key")
        if not self.context.dry_run:
            queryset = queryset.select_for_update()
        self.existing = {session.key: session for session in queryset}

    def open(self, key: str, values: list[Any]) -> SessionState:
        session = self.existing.get(key)
        if session is not None and session.timeout_at <= self.context.now:
            self.timed_out.append(session)
            session = None
        state = SessionState(
            key=key,
            values=values,
            data=dict(session.data) if session else {},
            meta=dict(session.meta) if session else {},
            timeout_at=session.timeout_at if session else None,
            model=session,
        )
        self.states.append(state)
        return state

    def _record(self, values: list[Any], data: dict) -> dict:
        return emitted_record(
            self.key_fields, values, data, nested_data=self.kind == AggregationStore.Kind.DATA
        )

    def finish(self):
        out = [self._record(session.field_values, session.data) for session in self.timed_out]
        touched = [state for state in self.states if state.touched]
        if self.context.dry_run:
            out += [self._record(state.values, state.data) for state in touched]
            return NodeOutput(out, note="preview: the sessions as they would be emitted when they time out")
        now = self.context.now
        if self.timed_out:
            AggregationSession.objects.filter(pk__in=[session.pk for session in self.timed_out]).delete()
        created, updated = [], []
        for state in touched:
            if state.model is None:
                created.append(
                    AggregationSession(
                        account_id=self.context.account_id,
                        store=self.store,
                        stream=self.context.stream,
                        node_id=self.node_id,
                        key=state.key,
                        field_values=state.values,
                        data=state.data,
                        meta=state.meta,
                        created_at=now,
                        updated_at=now,
                        timeout_at=state.timeout_at,
                    )
                )
            else:
                session = state.model
                session.data, session.meta, session.timeout_at, session.updated_at = (
                    state.data,
                    state.meta,
                    state.timeout_at,
                    now,
                )
                session.stream, session.node_id = self.context.stream, self.node_id
                updated.append(session)
        if created:
            AggregationSession.objects.bulk_create(created)
        if updated:
            AggregationSession.objects.bulk_update(
                updated, ["data", "meta", "timeout_at", "updated_at", "stream", "node_id"]
            )
        return NodeOutput(out)
