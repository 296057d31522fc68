"""The budget every evaluation of a user expression runs under, enforced inside the evaluator.

A CEL expression is user code run on every record, in web workers (previews) and Celery workers
(runs). Without comprehensions its work is bounded by its size, which import bounds (length and
nesting depth); comprehensions (``map``, ``filter``, ``all``, ``exists``, ``exists_one``) and the
values an expression builds are what can grow. So one ``Evaluation`` per record counts:

- **steps**: every comprehension iteration costs the static size of its body (the number of
  operations in it), every operation on a sized value costs its size (one step per 32 elements
  of a list or map, per 16 KiB of a string); beyond ``STREAM_SCRIPT_MAX_STEPS`` the evaluation
  stops. (A record's lists and maps are converted once per evaluation, however often they are
  read.)
- **strings**: no string or bytes value built longer than ``STREAM_SCRIPT_MAX_STRING_LENGTH``.
- **collections**: no list or map built with more than ``STREAM_SCRIPT_MAX_COLLECTION_SIZE``
  elements, nested elements counted as often as they appear (``[x, x]`` holds ``x`` twice), so
  shared references cannot double their way past it.
- **time**: a preview also passes a deadline (``STREAM_SCRIPT_PREVIEW_SECONDS`` for the whole
  preview), checked at the start of each evaluation and on every comprehension iteration. Runs
  have none: what they count must not depend on the machine's load; Celery's time limits bound
  them instead.

Exceeding any of these raises ``BudgetExceeded`` (a ``CelError``): the node rejects that record
with the reason and the run goes on. The step count is deterministic: the same expression and
record are accepted or rejected the same way everywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import lark


class CelError(Exception):
    """A CEL expression failed for one activation; ``str(error)`` is the reason."""


class BudgetExceeded(CelError):
    """The evaluation went over one of its budgets (see the module docstring)."""


@dataclass(frozen=True)
class ScriptLimits:
    max_steps: int = 10_000
    max_string_length: int = 100_000
    max_collection_size: int = 10_000
    max_depth: int = 100
    preview_seconds: float = 3.0


def script_limits() -> ScriptLimits:
    """The limits in force (settings ``STREAM_SCRIPT_*``; documented in docs/engine.md)."""
    from django.conf import settings

    return ScriptLimits(
        max_steps=settings.STREAM_SCRIPT_MAX_STEPS,
        max_string_length=settings.STREAM_SCRIPT_MAX_STRING_LENGTH,
        max_collection_size=settings.STREAM_SCRIPT_MAX_COLLECTION_SIZE,
        max_depth=settings.STREAM_SCRIPT_MAX_DEPTH,
        preview_seconds=settings.STREAM_SCRIPT_PREVIEW_SECONDS,
    )


# An operation costs one step per this many elements of a list or map, or characters of a string,
# that it reads: comparing or searching them runs in C, far faster than a step of the evaluator.
COLLECTION_STEP_ELEMENTS = 32
STRING_STEP_CHARACTERS = 16 * 1024
_COLLECTIONS = (list, dict)
_TEXTS = (str, bytes)


class Evaluation:
    """The counters of one evaluation (one record). Kept in the activation under ``KEY``."""

    KEY = " evaluation"  # not a CEL identifier: no expression can read or shadow it

    __slots__ = ("limits", "steps", "deadline", "converted", "sizes")

    def __init__(self, limits: ScriptLimits, deadline: float | None = None):
        self.limits = limits
        self.steps = 0
        self.deadline = deadline
        # id -> (object, value): objects are kept so their ids stay theirs during the evaluation.
        self.converted: dict[int, tuple[Any, Any]] = {}
        self.sizes: dict[int, tuple[Any, int]] = {}
        if deadline is not None and time.monotonic() > deadline:
            raise BudgetExceeded(self.deadline_message())

    def deadline_message(self) -> str:
        return (
            f"the preview's time budget ({self.limits.preview_seconds:g} s for all its records, "
            "STREAM_SCRIPT_PREVIEW_SECONDS) ran out before this record"
        )

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.steps > self.limits.max_steps:
            raise BudgetExceeded(
                f"the expression exceeded its budget of {self.limits.max_steps} steps "
                "(STREAM_SCRIPT_MAX_STEPS)"
            )

    def iteration(self, steps: int) -> None:
        """One comprehension iteration whose body costs ``steps``."""
        self.charge(steps)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BudgetExceeded(self.deadline_message())

    def size_of(self, value: Any) -> int:
        """Elements in a list or map, nested ones counted as often as they appear (cached)."""
        known = self.sizes.get(id(value))
        if known is not None:
            return known[1]
        total, stack = 0, [value]
        while stack:
            current = stack.pop()
            cached = self.sizes.get(id(current))
            if cached is not None and current is not value:
                total += cached[1]
                continue
            items = current.values() if isinstance(current, dict) else current
            for item in items:
                total += 1
                if isinstance(item, _COLLECTIONS):
                    stack.append(item)
            if total > self.limits.max_collection_size * 16:
                break  # far past any limit already: the exact figure does not matter
        self.sizes[id(value)] = (value, total)
        return total

    def built(self, value: Any) -> Any:
        """Check a list or map the expression just built; returns it."""
        size = len(value)
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            if isinstance(item, _COLLECTIONS):
                size += self.size_of(item)
        self.sizes[id(value)] = (value, size)
        if size > self.limits.max_collection_size:
            raise BudgetExceeded(
                f"the expression built a list or map of {size} elements, more than "
                f"{self.limits.max_collection_size} (STREAM_SCRIPT_MAX_COLLECTION_SIZE)"
            )
        return value

    def text(self, value: Any) -> Any:
        """Check a string or bytes value the expression just built; returns it."""
        if len(value) > self.limits.max_string_length:
            raise BudgetExceeded(
                f"the expression built a string of {len(value)} characters, more than "
                f"{self.limits.max_string_length} (STREAM_SCRIPT_MAX_STRING_LENGTH)"
            )
        return value

    def operands(self, *values: Any) -> None:
        """Charge an operation for the sized values it reads."""
        elements = characters = 0
        for value in values:
            if isinstance(value, _COLLECTIONS):
                elements += self.size_of(value)
            elif isinstance(value, _TEXTS):
                characters += len(value)
        steps = elements // COLLECTION_STEP_ELEMENTS + characters // STRING_STEP_CHARACTERS
        if steps:
            self.charge(steps)


def checked_result(evaluation: Evaluation, value: Any) -> Any:
    """A value an operation produced: strings and collections are held to their limits."""
    if isinstance(value, _TEXTS):
        return evaluation.text(value)
    if isinstance(value, _COLLECTIONS):
        return evaluation.built(value)
    return value


# --- Nesting depth, checked before anything recurses over the tree --------------------------------

# Grammar rules that, with a single child, only pass it on: they add no nesting of their own.
PASS_THROUGH = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
    }
)


# Operator markers and argument lists: part of the node above them, not a level of their own.
_NOT_NESTING = frozenset(
    {
        "relation_lt",
        "relation_le",
        "relation_ge",
        "relation_gt",
        "relation_eq",
        "relation_ne",
        "relation_in",
        "addition_add",
        "addition_sub",
        "multiplication_div",
        "multiplication_mul",
        "multiplication_mod",
        "unary_not",
        "unary_neg",
        "exprlist",
        "mapinits",
        "fieldinits",
    }
)


def significant(tree: Any) -> Any:
    """The first node under ``tree`` that is not a single-child pass-through rule."""
    while (
        isinstance(tree, lark.Tree)
        and tree.data in PASS_THROUGH
        and len(tree.children) == 1
        and isinstance(tree.children[0], lark.Tree)
    ):
        tree = tree.children[0]
    return tree


def nesting_depth(tree: lark.Tree) -> int:
    """The deepest chain of operations, calls, selections and literals (iteratively: a tree of any
    depth is measured without recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, lark.Tree):
            continue
        inner = significant(node)
        if inner is not node:
            stack.append((inner, depth))
            continue
        if node.data not in _NOT_NESTING:
            depth += 1
            deepest = max(deepest, depth)
        stack.extend((child, depth) for child in node.children)
    return deepest


def bracket_depth(text: str) -> int:
    """The deepest nesting of ``( [ {`` outside string literals: a lower bound of the nesting
    depth, found in one pass before the (much slower) parser sees a deeply nested expression."""
    deepest = depth = position = 0
    length = len(text)
    while position < length:
        character = text[position]
        if character in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in ")]}":
            depth -= 1
        elif character in "'\"":
            quote = character * 3 if text.startswith(character * 3, position) else character
            raw = position > 0 and text[position - 1] in "rR"
            position += len(quote)
            while position < length and not text.startswith(quote, position):
                position += 2 if text[position] == "\\" and not raw else 1
            position += len(quote) - 1
        position += 1
    return deepest
