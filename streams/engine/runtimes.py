"""Node runtimes: what each node type does with the whole batch of records it receives.

One class per node type, built from the node's typed config (``streams.nodes``) once per run;
``process(records, context)`` takes every record of the batch at once (set-based: one query per
batch for the nodes that touch the database) and returns ``NodeOutput(out, rejected)``. A
rejected record carries a reason and goes no further; records a node leaves out on purpose
(filtered, duplicates, dropped by a script) are neither output nor rejected.

Side-effecting nodes (deduplicate, the aggregators, inspect, httpForwarder, meter) honour
``context.dry_run``: they read what they need and write and send nothing.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from config.api.serializers import format_timestamp
from streams.engine import dedup, deliveries, sessions
from streams.engine.cel import CelError, cel_compile
from streams.engine.conditions import conditions_predicate
from streams.engine.context import NodeOutput, RunContext
from streams.engine.keys import KeyFieldInvalid, key_values_reader
from streams.engine.metering_seam import MeterNode, apply_meter_records, meters_flush_after_execution
from streams.engine.records import MISSING, PathConflict, path_getter, paths_set
from streams.nodes import (
    Config,
    DataAggregatorConfig,
    DeduplicateConfig,
    FilterConfig,
    HttpForwarderConfig,
    InspectConfig,
    MapConfig,
    MeterConfig,
    OnlineCollectorConfig,
    ScriptAggregatorConfig,
    ScriptConfig,
)


class NodeRuntime(ABC):
    """One node of a run plan; each node type implements ``process``."""

    def __init__(self, node_id: str, name: str, config: Config):
        self.node_id = node_id
        self.name = name
        self.config = config

    @abstractmethod
    def process(self, records: list[Any], context: RunContext) -> NodeOutput:
        """The node's output and rejections for ``records``."""


NUL_IN_RECORD = "a record must not hold a NUL character (\\u0000): PostgreSQL cannot store it"
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _without_nul(record: Any) -> Any:
    """The record as it can be stored (in the run's rejections): NUL characters as U+FFFD."""
    return msgspec.json.decode(_NUL_ESCAPE.sub(rb"\1\\ufffd", msgspec.json.encode(record)))


class OnlineCollectorRuntime(NodeRuntime):
    """Input: the collected records. Anything that is not a JSON object is rejected here, and so
    is a record holding a NUL character anywhere (JSON allows ``\\u0000``; PostgreSQL stores it
    in no text or jsonb column, so it would fail the whole run wherever it was written). The NUL
    check is one encoding of the whole batch; records are looked at one by one only when it finds
    one."""

    config: OnlineCollectorConfig

    def process(self, records, context):
        out, rejected = [], []
        for record in records:
            if type(record) is dict:
                out.append(record)
            else:
                rejected.append((record, "a record must be a JSON object"))
        if out and b"\\u0000" in msgspec.json.encode(out):
            clean = []
            for record in out:
                if _NUL_ESCAPE.search(msgspec.json.encode(record)):
                    rejected.append((_without_nul(record), NUL_IN_RECORD))
                else:
                    clean.append(record)
            out = clean
        return NodeOutput(out, rejected)


class FilterRuntime(NodeRuntime):
    config: FilterConfig

    def __init__(self, node_id, name, config):
        super().__init__(node_id, name, config)
        self.predicate = conditions_predicate(config.conditions, config.operator)

    def process(self, records, context):
        predicate = self.predicate
        return NodeOutput([record for record in records if predicate(record)])


class MapRuntime(NodeRuntime):
    """Every expression sees the record as it arrived (``record``); all fields are then set on a
    copy. A failing expression rejects the record with the CEL error."""

    config: MapConfig

    def __init__(self, node_id, name, config):
        super().__init__(node_id, name, config)
        self.fields = [
            (target, tuple(target.split(".")), cel_compile(expression))
            for target, expression in config.fields.items()
        ]

    def process(self, records, context):
        out, rejected = [], []
        for record in records:
            activation = {"record": record}
            assignments = []
            try:
                for target, segments, program in self.fields:
                    try:
                        assignments.append(
                            (segments, program.evaluate(activation, deadline=context.script_deadline))
                        )
                    except CelError as exc:
                        raise CelError(f"fields.{target}: {exc}")
                out.append(paths_set(record, assignments))
            except (CelError, PathConflict) as exc:
                rejected.append((record, str(exc)))
        return NodeOutput(out, rejected)


class ScriptRuntime(NodeRuntime):
    """``expression`` over ``record``: a map becomes the record, ``true`` keeps it, ``false``
    drops it. An error, or any other result, rejects the record."""

    config: ScriptConfig

    def __init__(self, node_id, name, config):
        super().__init__(node_id, name, config)
        self.program = cel_compile(config.expression)

    def process(self, records, context):
        out, rejected = [], []
        for record in records:
            try:
                result = self.program.evaluate({"record": record}, deadline=context.script_deadline)
            except CelError as exc:
                rejected.append((record, str(exc)))
                continue
            if isinstance(result, dict):
                out.append(result)
            elif result is True:
                out.append(record)
            elif result is not False:
                rejected.append(
                    (
                        record,
                        "the script must return a map (the new record) or a boolean "
                        f"(keep or drop), not {_json_type(result)}",
                    )
                )
        return NodeOutput(out, rejected)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class DeduplicateRuntime(NodeRuntime):
    """The first record of each key passes, if the key was not seen within ``windowSeconds`` (in
    this batch or an earlier run); later ones are dropped. A record without its key fields is
    rejected."""

    config: DeduplicateConfig

    def __init__(self, node_id, name, config):
        super().__init__(node_id, name, config)
        self.read_key = key_values_reader(config.key_fields)

    def process(self, records, context):
        rejected = []
        first: dict[str, dict] = {}
        for record in records:
            try:
                _, key = self.read_key(record)
            except KeyFieldInvalid as exc:
                rejected.append((record, str(exc)))
                continue
            first.setdefault(key, record)
        if not first:
            return NodeOutput([], rejected)
        if context.dry_run:
            seen = dedup.keys_seen(
                stream_id=context.stream.pk, node_id=self.node_id, keys=list(first), now=context.now
            )
            fresh = set(first) - seen
        else:
            fresh = dedup.keys_claim(
                stream_id=context.stream.pk,
                node_id=self.node_id,
                keys=list(first),
                now=context.now,
                expires_at=context.now + timedelta(seconds=self.config.window_seconds),
            )
        return NodeOutput([record for key, record in first.items() if key in fresh], rejected)


# --- Meter processor -----------------------------------------------------------------------------

_DIGITS = re.compile(r"^-?\d{1,16}$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
TIMESTAMP_MESSAGE = "timestamp must be ISO 8601 with a timezone (2023-07-01T00:00:00Z) or Unix milliseconds"


def timestamp_normalize(value: Any) -> str:
    """ISO 8601 with a zone, or Unix milliseconds (number or digits), as ``…T00:00:00.000Z``."""
    if isinstance(value, bool):
        raise ValueError(TIMESTAMP_MESSAGE)
    if isinstance(value, str) and _DIGITS.match(value):
        value = int(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(TIMESTAMP_MESSAGE)
        try:
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
        except OverflowError:
            raise ValueError(TIMESTAMP_MESSAGE)
        return format_timestamp(moment)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(TIMESTAMP_MESSAGE)
        if moment.tzinfo is None:
            raise ValueError(TIMESTAMP_MESSAGE)
        return format_timestamp(moment)
    raise ValueError(TIMESTAMP_MESSAGE)


def _user_id_normalize(user_id: Any) -> str:
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError(
            "userId is required (a non-empty string)"
            if user_id in (None, "")
            else "userId must be a non-empty string"
        )
    if len(user_id) > 320:
        raise ValueError("userId must be at most 320 characters")
    return user_id


def value_normalize(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("value must be a number")
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        text = value.strip()
        value = int(text) if _DIGITS.match(text) else float(text)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ValueError("value must be a number")


class MeterRuntime(NodeRuntime):
    """The Meter processor: checks ``userId``/``value``/``timestamp``, picks the first guiding
    rule whose conditions match (no conditions: always), annotates the record with ``_meter``
    and hands the batch to the ledger through ``metering_seam.apply_meter_records``."""

    config: MeterConfig

    def __init__(self, node_id, name, config):
        super().__init__(node_id, name, config)
        # The ``_meter`` annotation of each rule, built once: records are never changed in place
        # (see ``records``), so the records a rule routes share it unless the node groups.
        self.rules = [
            (
                conditions_predicate(rule.conditions, rule.condition_operator),
                self._annotation(index, rule.category),
            )
            for index, rule in enumerate(config.guiding_rules)
        ]
        self.unguided = self._annotation(None, None)
        self.group_by = [(name, path_getter(name)) for name in config.group_by]

    def _annotation(self, rule_index: int | None, category: str | None) -> dict:
        return {
            "meterKey": self.config.meter_key,
            "guidingRule": rule_index,
            "category": category,
            "groupsKey": category if category is not None else "default",
            "groupBy": {},
        }

    def route(self, record: dict) -> dict:
        """The annotated record, or ``ValueError`` with the reason it cannot be metered."""
        annotated = {**record}
        user_id = record.get("userId")
        if type(user_id) is not str or not user_id.strip() or len(user_id) > 320:
            annotated["userId"] = _user_id_normalize(user_id)
        value = record.get("value")
        if type(value) is not int and (type(value) is not float or not math.isfinite(value)):
            if value is None:
                raise ValueError("value is required")
            annotated["value"] = value_normalize(value)
        if record.get("timestamp") is not None:
            annotated["timestamp"] = timestamp_normalize(record["timestamp"])
        annotation = self.unguided
        if self.rules:
            annotation = None
            for predicate, rule_annotation in self.rules:
                if predicate(record):
                    annotation = rule_annotation
                    break
            if annotation is None:
                raise ValueError("no guiding rule matches the record")
        if self.group_by:
            group_values = {}
            for name, get in self.group_by:
                found = get(record)
                group_values[name] = None if found is MISSING else found
            annotation = {**annotation, "groupBy": group_values}
        annotated["_meter"] = annotation
        return annotated

    def process(self, records, context):
        routed: list[dict | None] = []
        refusals: dict[int, str] = {}
        route = self.route
        for index, record in enumerate(records):
            try:
                routed.append(route(record))
            except ValueError as exc:
                routed.append(None)
                refusals[index] = str(exc)
        if context.dry_run or not records:
            return NodeOutput(
                [annotated for annotated in routed if annotated is not None],
                [(records[index], reason) for index, reason in refusals.items()],
                note="preview: routed only; nothing is metered" if context.dry_run else "",
            )
        # The ledger counts the routed records and keeps the refused ones in data correction.
        node = MeterNode(self.node_id, self.name, self.config)
        position = context.source_position or (
            f"run:{context.run.pk}" if context.run is not None else f"at:{context.now.isoformat()}"
        )
        result = apply_meter_records(
            context.stream, node, records, routed, refusals, context.run, position=position
        )
        if self.config.flush == "streamExecution" and result.counted_meter_ids:
            # Flush by stream execution: the meters this run counted are flushed and reset now.
            meters_flush_after_execution(
                context.stream, node, result.counted_meter_ids, position, context.now
            )
        return NodeOutput(result.out, result.rejected)


# --- Aggregators ---------------------------------------------------------------------------------


class ScriptAggregatorRuntime(NodeRuntime):
    """Sessions keyed by ``keyFields`` (in order). For each record, in order, ``script`` sees
    ``record`` and ``session`` (the session's data, ``{}`` for a new one) and returns the
    session's new data (a map). A session times out ``timeoutSeconds`` after its last update and
    is then emitted downstream (data plus key fields) by the sweep, or by the next run that
    meets it first."""

    config: ScriptAggregatorConfig

    def __init__(self, node_id, name, config):
        super().__init__(node_id, name, config)
        self.read_key = key_values_reader(config.key_fields)
        self.program = cel_compile(config.script, ("record", "session"))

    def process(self, records, context):
        groups, rejected = sessions.group_by_key(records, self.read_key)
        book = sessions.SessionBook(
            context,
            node_id=self.node_id,
            store_id=self.config.store_id,
            kind="script",
            key_fields=self.config.key_fields,
        )
        book.load(list(groups))
        timeout = timedelta(seconds=self.config.timeout_seconds)
        for key, (values, members) in groups.items():
            state = book.open(key, values)
            for record in members:
                try:
                    data = self.program.evaluate(
                        {"record": record, "session": state.data}, deadline=context.script_deadline
                    )
                except CelError as exc:
                    rejected.append((record, str(exc)))
                    continue
                if not isinstance(data, dict):
                    rejected.append(
                        (
                            record,
                            f"the aggregation script must return a map (the session's data), "
                            f"not {_json_type(data)}",
                        )
                    )
                    continue
                state.update(
                    data,
                    state.meta | {"recordCount": state.meta.get("recordCount", 0) + 1},
                    timeout_at=context.now + timeout,
                )
        output = book.finish()
        output.rejected = rejected
        return output


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


NOT_FINITE_AGGREGATE = "the aggregate would not be a finite number (the sum overflowed): it cannot be stored"


def _finite(data: dict) -> bool:
    return all(not isinstance(value, float) or math.isfinite(value) for value in data.values())


class DataAggregatorRuntime(NodeRuntime):
    """Groups the batch by ``keyFields`` and aggregates (sum, count, min, max, avg, first, last).
    Without ``timeoutSeconds`` one record per key leaves the node in the same run (key fields plus
    targets). With it, the aggregates accumulate in a session that is emitted ``timeoutSeconds``
    after the key's first record."""

    config: DataAggregatorConfig

    NUMERIC = frozenset({"sum", "min", "max", "avg"})

    def __init__(self, node_id, name, config):
        super().__init__(node_id, name, config)
        self.read_key = key_values_reader(config.key_fields)
        self.aggregations = [
            (
                aggregation.target,
                aggregation.function,
                path_getter(aggregation.field) if aggregation.field else None,
                aggregation.field,
            )
            for aggregation in config.aggregations
        ]

    def _problem(self, record: dict) -> str | None:
        for _, function, get, field_name in self.aggregations:
            if function in self.NUMERIC:
                value = get(record)
                if value is MISSING:
                    return f"field {field_name} is missing"
                if not _number(value):
                    return f"field {field_name} must be a number"
        return None

    def accumulate(self, data: dict, meta: dict, records: list[dict]) -> tuple[dict, dict]:
        data, averages = dict(data), {k: list(v) for k, v in meta.get("averages", {}).items()}
        for target, function, get, _ in self.aggregations:
            current = data.get(target)
            if function == "count":
                data[target] = (current or 0) + len(records)
                continue
            values = [value for value in map(get, records) if value is not MISSING]
            if function == "sum":
                data[target] = (current or 0) + sum(values)
            elif function == "min":
                data[target] = min(values + ([current] if current is not None else []), default=None)
            elif function == "max":
                data[target] = max(values + ([current] if current is not None else []), default=None)
            elif function == "avg":
                total, count = averages.get(target, [0, 0])
                total, count = total + sum(values), count + len(values)
                averages[target] = [total, count]
                data[target] = total / count if count else None
            elif function == "first":
                if target not in data:
                    data[target] = values[0] if values else None
                elif data[target] is None and values:
                    data[target] = values[0]
            elif function == "last":
                if values:
                    data[target] = values[-1]
                else:
                    data.setdefault(target, None)
        new_meta = {**meta, "recordCount": meta.get("recordCount", 0) + len(records)}
        if averages:
            new_meta["averages"] = averages
        return data, new_meta

    def process(self, records, context):
        valid, rejected = [], []
        for record in records:
            problem = self._problem(record)
            if problem:
                rejected.append((record, problem))
            else:
                valid.append(record)
        groups, key_rejected = sessions.group_by_key(valid, self.read_key)
        rejected += key_rejected
        if self.config.timeout_seconds is None:
            out = []
            for values, members in groups.values():
                data, _ = self.accumulate({}, {}, members)
                if not _finite(data):
                    rejected += [(record, NOT_FINITE_AGGREGATE) for record in members]
                    continue
                out.append(sessions.emitted_record(self.config.key_fields, values, data, nested_data=True))
            return NodeOutput(out, rejected)
        book = sessions.SessionBook(
            context,
            node_id=self.node_id,
            store_id=self.config.store_id,
            kind="data",
            key_fields=self.config.key_fields,
        )
        book.load(list(groups))
        for key, (values, members) in groups.items():
            state = book.open(key, values)
            data, meta = self.accumulate(state.data, state.meta, members)
            if not _finite(data):  # the session keeps what it had; these records are refused
                rejected += [(record, NOT_FINITE_AGGREGATE) for record in members]
                continue
            # Emitted timeoutSeconds after the key's first record: an existing session keeps its timeout.
            timeout_at = state.timeout_at or context.now + timedelta(seconds=self.config.timeout_seconds)
            state.update(data, meta, timeout_at=timeout_at)
        output = book.finish()
        output.rejected = rejected
        return output


# --- Outputs -------------------------------------------------------------------------------------


class HttpForwarderRuntime(NodeRuntime):
    """Queues the records in the outputs' outbox (``deliveries``), in the run's transaction; a
    worker sends them after the commit (500 per request, ``{{param:…}}`` resolved then), with
    retries. The run itself never calls the network, so a target that is down never fails it."""

    config: HttpForwarderConfig

    def process(self, records, context):
        if context.dry_run:
            return NodeOutput(list(records), note="preview: nothing is sent")
        deliveries.output_records_queue(context=context, node_id=self.node_id, records=records)
        return NodeOutput(list(records))


class InspectRuntime(NodeRuntime):
    """Passes every record on and keeps the last ``keepLast`` of them for the admin."""

    config: InspectConfig

    def process(self, records, context):
        if not context.dry_run and records:
            from streams.engine.inspect import inspect_records_keep

            inspect_records_keep(
                context=context, node_id=self.node_id, records=records, keep_last=self.config.keep_last
            )
        return NodeOutput(list(records))


RUNTIMES: dict[str, type[NodeRuntime]] = {
    "onlineCollector": OnlineCollectorRuntime,
    "filter": FilterRuntime,
    "map": MapRuntime,
    "script": ScriptRuntime,
    "deduplicate": DeduplicateRuntime,
    "meter": MeterRuntime,
    "scriptAggregator": ScriptAggregatorRuntime,
    "dataAggregator": DataAggregatorRuntime,
    "httpForwarder": HttpForwarderRuntime,
    "inspect": InspectRuntime,
}
