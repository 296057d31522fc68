"""CEL for the stream engine: parsed by celpy, compiled once into closures, run under a budget.

- ``compiler``: the syntax tree as nested closures calling celpy's own functions (same values,
  same error messages), comprehensions included; nothing is evaluated as Python.
- ``budget``: the limits every evaluation runs under (steps, string lengths, collection sizes,
  a preview's time) and the nesting depth checked at import.
- ``values``: JSON values to CEL values and back; a result that cannot be stored (NaN, infinity,
  NUL characters) is an error there.

``cel_check`` is what import validation calls; ``cel_compile(text).evaluate(activation)`` is what
the nodes call for every record: it returns the result or raises ``CelError`` with the reason,
and never raises anything else.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import celpy
from celpy.evaluation import CELEvalError
from django.core.signals import setting_changed

from streams.engine.cel.budget import (
    BudgetExceeded,
    CelError,
    Evaluation,
    ScriptLimits,
    bracket_depth,
    nesting_depth,
    script_limits,
)
from streams.engine.cel.compiler import Compiler, Unsupported, parse, walk_raw
from streams.engine.cel.values import from_cel, message, to_cel

__all__ = [
    "BudgetExceeded",
    "CelError",
    "CelInvalid",
    "CelProgram",
    "ScriptLimits",
    "cel_check",
    "cel_compile",
    "from_cel",
    "limits",
    "to_cel",
]

_message = message  # the name the differential tests use


class CelInvalid(ValueError):
    """The expression cannot be run (syntax, nesting, an unsupported construct): the reason."""


# Python errors celpy lets through for one activation (a comparison's ValueError, a recursion over
# a deeply nested record value…): for the record at hand they are still just a failed expression.
_UNEXPECTED = (
    ArithmeticError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    RecursionError,
    MemoryError,
)


@functools.cache
def limits() -> ScriptLimits:
    """The budget settings, read once (and again whenever a setting changes, as tests do)."""
    return script_limits()


def _settings_changed(setting: str, **kwargs: Any) -> None:
    if setting.startswith("STREAM_SCRIPT_"):
        limits.cache_clear()


setting_changed.connect(_settings_changed)


def _too_deep(depth: int, allowed: int) -> CelInvalid:
    return CelInvalid(
        f"The expression is nested {depth} levels deep; at most {allowed} are allowed "
        "(STREAM_SCRIPT_MAX_DEPTH)."
    )


def _tree(text: str) -> Any:
    allowed = limits().max_depth
    depth = bracket_depth(text)
    if depth > allowed:
        raise _too_deep(depth, allowed)
    try:
        tree = parse(text)
    except celpy.CELParseError as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f" at line {line}, column {column}" if line and column else ""
        raise CelInvalid(f"Not a valid CEL expression: syntax error{where}.")
    except RecursionError:
        raise CelInvalid("Not a valid CEL expression: nested too deeply to parse.")
    depth = nesting_depth(tree)
    if depth > allowed:
        raise _too_deep(depth, allowed)
    return tree


class CelProgram:
    """A CEL expression ready to evaluate against many activations (``{"record": {...}}``)."""

    def __init__(self, text: str, variables: tuple[str, ...]):
        self.text = text
        self.variables = variables
        tree = _tree(text)
        compiler = Compiler(frozenset(variables))
        try:
            self._closure = compiler.compile(tree)
        except Unsupported as exc:
            raise CelInvalid(f"Not a supported CEL expression: {exc}.")
        except RecursionError:  # cannot happen under the depth limit; refused all the same
            raise CelInvalid("The expression is nested too deeply.")
        self._raw_path = compiler.whole_path(tree)

    def evaluate(self, activation: dict[str, Any], *, deadline: float | None = None) -> Any:
        """The result as a Python value; raises ``CelError`` with the reason on an error or when
        the budget is exceeded. ``deadline``: a ``time.monotonic()`` value (previews)."""
        try:
            if self._raw_path is not None:
                # A bare path (``record.customer.id``): the value is the record's own, unconverted.
                if deadline is not None and time.monotonic() > deadline:
                    Evaluation(limits(), deadline)  # raises with the reason
                value = walk_raw(activation[self._raw_path[0]], self._raw_path[1])
                if isinstance(value, CELEvalError):
                    raise CelError(message(value))
                return value
            scope = dict(activation)
            scope[Evaluation.KEY] = Evaluation(limits(), deadline)
            return from_cel(self._closure(scope))
        except CelError:
            raise
        except CELEvalError as exc:
            raise CelError(message(exc))
        except (celpy.evaluation.CELUnsupportedError, celpy.evaluation.CELSyntaxError) as exc:
            raise CelError(str(exc))
        except _UNEXPECTED as exc:
            raise CelError(f"{exc.__class__.__name__}: {exc}")


@functools.lru_cache(maxsize=1024)
def _compiled(text: str, variables: tuple[str, ...], depth: int) -> CelProgram:
    return CelProgram(text, variables)


def cel_compile(text: str, variables: tuple[str, ...] = ("record",)) -> CelProgram:
    """Parse and compile once (programs are immutable, so the same text shares one program).
    Raises ``CelInvalid`` for an expression import would refuse."""
    return _compiled(text, variables, limits().max_depth)


def cel_check(text: str, variables: tuple[str, ...] = ("record",)) -> str | None:
    """``None`` when ``text`` can run, else the reason import refuses it."""
    try:
        cel_compile(text, variables)
    except CelInvalid as exc:
        return str(exc)
    return None
