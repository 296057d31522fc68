"""The node types a stream is built from, and the validation of each type's ``config``.

One registry, ``NODE_TYPES``, used by import validation today and by the stream engine
(``streams/engine/``) tomorrow: ``node_config_parse(type, config)`` returns a typed, immutable
config (a ``msgspec.Struct`` with defaults filled in) or raises ``NodeConfigInvalid`` with every
problem found as ``(path, message)`` pairs, paths relative to the node's ``config``
(``"guidingRules[0].conditions[1].value"``).

Expressions (``script``, ``map``, ``scriptAggregator``) are CEL, parsed with cel-python; nothing
here or in the engine evaluates Python.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from streams.engine.cel import cel_check

# --- Shared pieces -------------------------------------------------------------------------------

MAX_EXPRESSION_LENGTH = 10_000
METER_KEY_MAX_LENGTH = 36
MAX_GUIDING_RULES = 10

# A record field: dot-separated segments without whitespace ("userId", "customer.region").
FIELD_PATH_PATTERN = r"^[^\s.]+(\.[^\s.]+)*\Z"
METER_KEY_PATTERN = r"^[\w.-]+\Z"
FieldPath = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=FIELD_PATH_PATTERN)]
FieldList = Annotated[list[FieldPath], msgspec.Meta(max_length=50)]
KeyFields = Annotated[list[FieldPath], msgspec.Meta(min_length=1, max_length=10)]
Expression = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EXPRESSION_LENGTH)]
MeterKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=METER_KEY_MAX_LENGTH, pattern=METER_KEY_PATTERN)
]
Seconds = Annotated[int, msgspec.Meta(ge=1, le=366 * 24 * 3600)]

# Global parameter references inside strings: ``{{param:group/name}}`` (seed 000's name syntax).
PARAMETER_REFERENCE = re.compile(r"\{\{param:([^{}]*)\}\}")
PARAMETER_NAME = re.compile(r"^[\w.-]+(?:/[\w.-]+){0,9}$")
HTTP_URL = re.compile(r"^https?://[^\s/?#]+\S*$", re.IGNORECASE)
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

Problems = list[tuple[str, str]]


class NodeRole(enum.StrEnum):
    INPUT = "input"  # reads from outside the stream: no incoming edges
    PROCESSOR = "processor"
    OUTPUT = "output"  # sends records out of the stream: no outgoing edges


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Base of every node config: camelCase keys, unknown keys refused, immutable once parsed."""

    def check(self) -> Problems:
        """Rules a type annotation cannot say. Paths are relative to the config."""
        return []

    def resource_refs(self) -> list[tuple[str, str]]:
        """``(resourceType, resourceId)`` pairs this node uses (the ``resourceRefs`` filters)."""
        return []


def cel_parse_error(text: str, variables: tuple[str, ...] = ("record",)) -> str | None:
    """``None`` when ``text`` is a CEL expression the engine can run, else the reason: a syntax
    error, nesting deeper than ``STREAM_SCRIPT_MAX_DEPTH``, an unsupported construct."""
    return cel_check(text, variables)


def parameter_references(text: str) -> list[str]:
    """Names of the global parameters ``text`` references as ``{{param:name}}``."""
    return PARAMETER_REFERENCE.findall(text)


def parameter_reference_problem(text: str) -> str | None:
    opened = text.count("{{param:")
    found = parameter_references(text)
    if opened != len(found):
        return "A parameter reference must be written {{param:name}}."
    for name in found:
        if len(name) > 900 or not PARAMETER_NAME.fullmatch(name):
            return f"'{name}' is not a valid global parameter name."
    return None


# --- Conditions (filter node, meter guiding rules) -----------------------------------------------

OPERATORS_BY_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset(
        {
            "equals",
            "notEquals",
            "contains",
            "notContains",
            "startsWith",
            "endsWith",
            "in",
            "notIn",
            "exists",
            "notExists",
        }
    ),
    "number": frozenset(
        {
            "equals",
            "notEquals",
            "greaterThan",
            "greaterThanOrEqual",
            "lessThan",
            "lessThanOrEqual",
            "in",
            "notIn",
            "exists",
            "notExists",
        }
    ),
    "boolean": frozenset({"equals", "notEquals", "exists", "notExists"}),
}
VALUELESS_OPERATORS = frozenset({"exists", "notExists"})
LIST_OPERATORS = frozenset({"in", "notIn"})


def _value_matches(value: Any, value_type: str) -> bool:
    if value_type == "string":
        return isinstance(value, str)
    if value_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, bool)


class Condition(Config, frozen=True):
    """``{field, type, operator, value}``: compares one record field with a typed value."""

    field: FieldPath
    type: Literal["string", "number", "boolean"]
    operator: str = "equals"
    value: Any = None

    def check(self) -> Problems:
        operators = OPERATORS_BY_TYPE[self.type]
        if self.operator not in operators:
            return [
                ("operator", f"Operator must be one of {', '.join(sorted(operators))} for type {self.type}.")
            ]
        if self.operator in VALUELESS_OPERATORS:
            return [] if self.value is None else [("value", f"Operator {self.operator} takes no value.")]
        if self.operator in LIST_OPERATORS:
            if not isinstance(self.value, list) or not self.value or len(self.value) > 100:
                return [("value", f"Operator {self.operator} takes a list of 1 to 100 values.")]
            for index, item in enumerate(self.value):
                if not _value_matches(item, self.type):
                    return [(f"value[{index}]", f"Must be a {self.type}.")]
            return []
        if self.value is None:
            return [("value", "This field is required.")]
        if not _value_matches(self.value, self.type):
            return [("value", f"Must be a {self.type}.")]
        return []


Conditions = Annotated[list[Condition], msgspec.Meta(max_length=50)]


def _nested(prefix: str, problems: Problems) -> Problems:
    return [(f"{prefix}.{path}" if path else prefix, message) for path, message in problems]


def _check_conditions(prefix: str, conditions: list[Condition]) -> Problems:
    problems: Problems = []
    for index, condition in enumerate(conditions):
        problems += _nested(f"{prefix}[{index}]", condition.check())
    return problems


# --- Node configs --------------------------------------------------------------------------------


class OnlineCollectorConfig(Config, frozen=True):
    """Input: the batches an online collector receives (``POST …/collectors/{id}/data``)."""

    collector_id: uuid.UUID

    def resource_refs(self) -> list[tuple[str, str]]:
        return [("onlineCollector", str(self.collector_id))]


class FilterConfig(Config, frozen=True):
    """Keeps the records matching the conditions, joined by AND or OR."""

    conditions: Annotated[list[Condition], msgspec.Meta(min_length=1, max_length=50)]
    operator: Literal["AND", "OR"] = "AND"

    def check(self) -> Problems:
        return _check_conditions("conditions", self.conditions)


class MapConfig(Config, frozen=True):
    """Sets fields from CEL expressions: ``{"fields": {"target.field": "record.a * 2"}}``."""

    fields: Annotated[dict[FieldPath, Expression], msgspec.Meta(min_length=1, max_length=100)]

    def check(self) -> Problems:
        problems: Problems = []
        for target, expression in self.fields.items():
            error = cel_parse_error(expression)
            if error:
                problems.append((f"fields.{target}", error))
        return problems


class ScriptConfig(Config, frozen=True):
    """A CEL expression over the record (``record``), e.g. ``record.bytes / 1024``."""

    expression: Expression

    def check(self) -> Problems:
        error = cel_parse_error(self.expression)
        return [("expression", error)] if error else []


class DeduplicateConfig(Config, frozen=True):
    """Drops a record whose key fields were seen within the window."""

    key_fields: KeyFields
    window_seconds: Seconds


class GuidingRule(Config, frozen=True):
    """A category a record is counted in when its conditions match (an empty list always matches)."""

    category: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    conditions: Conditions = []
    condition_operator: Literal["AND", "OR"] = "AND"


class MeterConfig(Config, frozen=True):
    """The Meter processor: counts records into meters of this ``meterKey``.

    ``guidingRules`` are tried in order; ``carryFirst``/``carryLast`` keep fields of the period's
    first and last record; ``groupBy`` breaks the value down by field values; ``flush`` sends the
    metered records downstream at the meter's period end or after every stream execution.
    """

    meter_key: MeterKey | None = None
    guiding_rules: Annotated[list[GuidingRule], msgspec.Meta(max_length=MAX_GUIDING_RULES)] = []
    carry_first: FieldList = []
    carry_last: FieldList = []
    group_by: Annotated[list[FieldPath], msgspec.Meta(max_length=10)] = []
    flush: Literal["periodEnd", "streamExecution"] = "periodEnd"

    def check(self) -> Problems:
        problems: Problems = []
        for index, rule in enumerate(self.guiding_rules):
            problems += _check_conditions(f"guidingRules[{index}].conditions", rule.conditions)
        for name, fields in (
            ("carryFirst", self.carry_first),
            ("carryLast", self.carry_last),
            ("groupBy", self.group_by),
        ):
            if len(set(fields)) != len(fields):
                problems.append((name, "Fields must not repeat."))
        return problems

    def resource_refs(self) -> list[tuple[str, str]]:
        return [("meterKey", self.meter_key)] if self.meter_key else []


class ScriptAggregatorConfig(Config, frozen=True):
    """Sessions keyed by ``keyFields`` (in order), updated by a CEL script, emitted on timeout."""

    store_id: uuid.UUID
    key_fields: KeyFields
    timeout_seconds: Seconds
    script: Expression

    def check(self) -> Problems:
        error = cel_parse_error(self.script, ("record", "session"))
        return [("script", error)] if error else []

    def resource_refs(self) -> list[tuple[str, str]]:
        return [("scriptAggregationStore", str(self.store_id))]


class Aggregation(Config, frozen=True):
    target: FieldPath
    function: Literal["sum", "count", "min", "max", "avg", "first", "last"]
    field: FieldPath | None = None


class DataAggregatorConfig(Config, frozen=True):
    """Aggregates fields per key (``sum``, ``count``…) in a store; emitted after each stream
    execution, or ``timeoutSeconds`` after a key's first record when set."""

    store_id: uuid.UUID
    key_fields: KeyFields
    aggregations: Annotated[list[Aggregation], msgspec.Meta(min_length=1, max_length=50)]
    timeout_seconds: Seconds | None = None

    def check(self) -> Problems:
        problems: Problems = []
        targets: set[str] = set()
        for index, aggregation in enumerate(self.aggregations):
            if aggregation.function != "count" and aggregation.field is None:
                problems.append(
                    (f"aggregations[{index}].field", f"Function {aggregation.function} needs a field.")
                )
            if aggregation.target in targets:
                problems.append((f"aggregations[{index}].target", "Targets must not repeat."))
            targets.add(aggregation.target)
        return problems

    def resource_refs(self) -> list[tuple[str, str]]:
        return [("dataAggregationStore", str(self.store_id))]


class HttpForwarderConfig(Config, frozen=True):
    """Output: sends records as JSON to ``url``. The URL and header values may reference global
    parameters as ``{{param:name}}`` (sensitive ones are decrypted only inside a run)."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    method: Literal["POST", "PUT"] = "POST"
    headers: Annotated[
        dict[str, Annotated[str, msgspec.Meta(max_length=8192)]], msgspec.Meta(max_length=50)
    ] = {}
    timeout_seconds: Annotated[int, msgspec.Meta(ge=1, le=60)] = 10

    def check(self) -> Problems:
        problems: Problems = []
        error = parameter_reference_problem(self.url)
        if error:
            problems.append(("url", error))
        elif not PARAMETER_REFERENCE.fullmatch(self.url) and not HTTP_URL.fullmatch(
            PARAMETER_REFERENCE.sub("parameter", self.url)
        ):
            # A whole-URL parameter is checked when the run resolves it; anything else must be http(s).
            problems.append(("url", "Must be an http:// or https:// URL (or a {{param:name}} reference)."))
        for name, value in self.headers.items():
            if not HEADER_NAME.fullmatch(name):
                problems.append((f"headers.{name}", "Not a valid HTTP header name."))
                continue
            error = parameter_reference_problem(value)
            if error:
                problems.append((f"headers.{name}", error))
            elif "\r" in value or "\n" in value:
                problems.append((f"headers.{name}", "Header values must not contain line breaks."))
        return problems

    def parameter_names(self) -> list[str]:
        names = parameter_references(self.url)
        for value in self.headers.values():
            names += parameter_references(value)
        return sorted(set(names))


class InspectConfig(Config, frozen=True):
    """Keeps the last ``keepLast`` records that passed, for preview."""

    keep_last: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10


# --- Registry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeType:
    name: str
    role: NodeRole
    config_class: type[Config]
    label: str


NODE_TYPES: dict[str, NodeType] = {
    node_type.name: node_type
    for node_type in (
        NodeType("onlineCollector", NodeRole.INPUT, OnlineCollectorConfig, "Online collector"),
        NodeType("filter", NodeRole.PROCESSOR, FilterConfig, "Filter"),
        NodeType("map", NodeRole.PROCESSOR, MapConfig, "Map"),
        NodeType("script", NodeRole.PROCESSOR, ScriptConfig, "Script"),
        NodeType("deduplicate", NodeRole.PROCESSOR, DeduplicateConfig, "Deduplicate"),
        NodeType("meter", NodeRole.PROCESSOR, MeterConfig, "Meter"),
        NodeType("scriptAggregator", NodeRole.PROCESSOR, ScriptAggregatorConfig, "Script aggregator"),
        NodeType("dataAggregator", NodeRole.PROCESSOR, DataAggregatorConfig, "Data aggregator"),
        NodeType("httpForwarder", NodeRole.OUTPUT, HttpForwarderConfig, "HTTP forwarder"),
        NodeType("inspect", NodeRole.PROCESSOR, InspectConfig, "Inspect"),
    )
}

# The resource types of the ``resourceRefs`` filters, and the node types that carry them.
RESOURCE_TYPES = ("meterKey", "onlineCollector", "scriptAggregationStore", "dataAggregationStore")


class NodeConfigInvalid(Exception):
    def __init__(self, problems: Problems):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


_MSGSPEC_ERROR = re.compile(
    r"^(?P<message>.*?)(?: - at `(?P<key>key)` in `\$(?P<keypath>[^`]*)`| - at `\$(?P<path>[^`]*)`)?$",
    re.DOTALL,
)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


# msgspec names the regex a string failed; say what the regex means instead.
_PATTERN_MESSAGES = {
    FIELD_PATH_PATTERN: "A field path is dot-separated names without spaces (e.g. customer.id).",
    METER_KEY_PATTERN: "A meter key is letters, digits, '_', '.' or '-'.",
}


def msgspec_problem(error: msgspec.ValidationError) -> tuple[str, str]:
    """Turn msgspec's "Expected `int`, got `str` - at `$.a[0].b`" into ``("a[0].b", "Expected …")``."""
    match = _MSGSPEC_ERROR.match(str(error))
    message = match.group("message")
    path = (match.group("path") or match.group("keypath") or "").lstrip(".")
    if match.group("key"):
        message = f"Key: {message}"
    if missing := _MISSING.match(message):
        return _join(path, missing.group("name")), "This field is required."
    if unknown := _UNKNOWN.match(message):
        return _join(path, unknown.group("name")), "Unknown field."
    for pattern, explained in _PATTERN_MESSAGES.items():
        if message.endswith(f"matching regex {pattern!r}"):
            return path, ("Key: " if match.group("key") else "") + explained
    return path, message


def node_config_parse(node_type: str, config: Any) -> Config:
    """Validate ``config`` for ``node_type`` and return it typed, or raise ``NodeConfigInvalid``."""
    registered = NODE_TYPES.get(node_type)
    if registered is None:
        raise NodeConfigInvalid([("", f"Unknown node type '{node_type}'.")])
    try:
        parsed = msgspec.convert(config, registered.config_class)
    except msgspec.ValidationError as exc:
        raise NodeConfigInvalid([msgspec_problem(exc)])
    problems = parsed.check()
    if problems:
        raise NodeConfigInvalid(problems)
    return parsed
