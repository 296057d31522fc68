"""CEL for the stream engine: parsed by celpy, evaluated by closures built once per expression.

celpy (cel-python) is the CEL implementation: its parser builds the syntax tree and its
``celtypes`` and ``base_functions`` define every operator and function. What this module adds is
speed: celpy's own interpreter walks the lark tree and builds a fresh activation on every
evaluation (about 130 µs for the literal ``1``), which is far too slow for thousands of records
per second. ``cel_compile`` turns the tree into nested Python closures that call the very same
celpy functions in the same order, with the same error values, as celpy's ``Evaluator`` does —
so results and error messages are celpy's — and reads ``record.a.b`` straight from the record's
dicts, converting only the value it reaches to a CEL type.

Constructs the closures do not cover (comprehension macros such as ``list.map(x, …)``,
``exists``, ``all``, message construction, type identifiers) fall back to celpy's own
interpreter for that expression: slower, never different. Nothing here evaluates Python code.
"""

from __future__ import annotations

import datetime
import functools
import threading
from collections.abc import Callable
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, base_functions, celbytes, celstr

Closure = Callable[[dict[str, Any]], Any]
_UNEXPECTED = (ArithmeticError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


class CelError(Exception):
    """A CEL expression failed for one activation; ``str(error)`` is the CEL error message."""


class _Unsupported(Exception):
    """The tree holds a construct the closure compiler leaves to celpy's interpreter."""


_environment: celpy.Environment | None = None
_environment_lock = threading.Lock()


def _parse(text: str) -> lark.Tree:
    global _environment
    with _environment_lock:  # lark's parser object is shared; parse one expression at a time
        if _environment is None:
            _environment = celpy.Environment()
        return _environment.compile(text)


# --- Python values <-> CEL values ----------------------------------------------------------------

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_new_int = int.__new__


def _int(value: int) -> celtypes.IntType:
    """``IntType(value)`` for a Python int: celpy's constructor builds a decorator on every call
    (about 10 µs); inside the int64 range the result is the same object shape, made directly."""
    if INT64_MIN <= value <= INT64_MAX:
        return _new_int(celtypes.IntType, value)
    raise ValueError("overflow")


_SCALARS_TO_CEL: dict[type, Callable[[Any], Any]] = {
    str: celtypes.StringType,
    int: _int,
    float: celtypes.DoubleType,
    bool: celtypes.BoolType,
}


def to_cel(value: Any) -> Any:
    """A JSON-shaped Python value as celpy's ``json_to_cel`` makes it, a little faster."""
    convert = _SCALARS_TO_CEL.get(type(value))
    if convert is not None:
        return convert(value)
    if value is None:
        return None
    if isinstance(value, dict):
        return celtypes.MapType({to_cel(key): to_cel(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return celtypes.ListType([to_cel(item) for item in value])
    return celpy.json_to_cel(value)  # datetimes, timedeltas, subclasses: celpy's own rules


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _format_timestamp(value: datetime.datetime) -> str:
    value = value.astimezone(datetime.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def from_cel(value: Any) -> Any:
    """A CEL result as a JSON-shaped Python value (the record the next node receives)."""
    if isinstance(value, CELEvalError):
        raise CelError(_message(value))
    if value is None:
        return None
    if isinstance(value, bool | celtypes.BoolType):  # BoolType subclasses int (not bool): test it first
        return bool(value)
    if isinstance(value, celtypes.TimestampType | datetime.datetime):
        return _format_timestamp(value)
    if isinstance(value, celtypes.DurationType | datetime.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {_map_key(key): from_cel(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [from_cel(item) for item in value]
    raise CelError(f"the result has no JSON form ({type(value).__name__})")


def _message(error: BaseException) -> str:
    if isinstance(error, CELEvalError) and error.args:
        message = str(error.args[0])
        # celpy appends the whole activation to "undeclared reference" messages; keep the name only.
        return message.split(" (in activation", 1)[0]
    return str(error) or error.__class__.__name__


# --- The compiled program ------------------------------------------------------------------------


class CelProgram:
    """A CEL expression ready to evaluate against many activations (``{"record": {...}}``)."""

    def __init__(self, text: str, variables: tuple[str, ...]):
        self.text = text
        self.variables = variables
        tree = _parse(text)
        self._runner = None
        self._raw_path: tuple[str, tuple[tuple[str, str], ...]] | None = None
        try:
            compiler = _Compiler(frozenset(variables))
            self._closure: Closure | None = compiler.expr(tree)
            self._raw_path = compiler.whole_path(tree)
        except _Unsupported:
            self._closure = None
            with _environment_lock:
                self._runner = _environment.program(tree)

    @property
    def is_compiled(self) -> bool:
        """False when this expression runs on celpy's interpreter (see the module docstring)."""
        return self._closure is not None

    def evaluate(self, activation: dict[str, Any]) -> Any:
        """The result as a Python value; raises ``CelError`` with CEL's message on an error."""
        try:
            if self._raw_path is not None:
                # A bare path (``record.customer.id``): the value is the record's own, unconverted.
                value = _walk_raw(activation[self._raw_path[0]], self._raw_path[1])
                if isinstance(value, CELEvalError):
                    raise CelError(_message(value))
                return value
            if self._closure is not None:
                return from_cel(self._closure(activation))
            return from_cel(
                self._runner.evaluate({name: to_cel(activation[name]) for name in self.variables})
            )
        except CELEvalError as exc:
            raise CelError(_message(exc))
        except (celpy.evaluation.CELUnsupportedError, celpy.evaluation.CELSyntaxError) as exc:
            raise CelError(str(exc))
        except _UNEXPECTED as exc:
            # celpy lets a few Python errors through (a comparison's ValueError, a deep recursion…);
            # for the record at hand they are still just a failed expression, never a failed run.
            raise CelError(f"{exc.__class__.__name__}: {exc}")


@functools.lru_cache(maxsize=1024)
def cel_compile(text: str, variables: tuple[str, ...] = ("record",)) -> CelProgram:
    """Parse and compile once; programs are immutable, so the same text shares one program."""
    return CelProgram(text, variables)


# --- Path walking over the activation's own dicts ------------------------------------------------


def _select(member: Any, name: str) -> Any:
    """``member.name`` exactly as celpy's ``Evaluator.member_dot`` answers it."""
    if isinstance(member, CELEvalError):
        return member
    if isinstance(member, celtypes.MessageType):
        return member.get(name)
    if isinstance(member, celtypes.MapType):
        try:
            return member[name]
        except KeyError:
            return CELEvalError(f"no such member in mapping: {name!r}", KeyError, None)
    return CELEvalError(
        f"{member!r} with type: '{type(member)}' does not support field selection", TypeError, None
    )


def _index(member: Any, index: Any) -> Any:
    """``member[index]`` exactly as celpy's ``Evaluator.member_index`` answers it."""
    try:
        return base_functions["_[_]"](member, index)
    except TypeError as ex:
        return CELEvalError(
            f"found no matching overload for _[_] applied to '({type(member)}, {type(index)})'",
            ex.__class__,
            ex.args,
        )
    except KeyError as ex:
        return CELEvalError("no such key", ex.__class__, ex.args)
    except IndexError as ex:
        return CELEvalError("invalid_argument", ex.__class__, ex.args)


def _walk_raw(value: Any, steps: tuple[tuple[str, str], ...]) -> Any:
    """Follow ``.name`` / ``['key']`` steps through plain dicts; on the first step that is not a
    plain dict lookup, continue on CEL values so the answer (or error) is celpy's."""
    for position, (_kind, name) in enumerate(steps):
        if type(value) is dict and name in value:
            value = value[name]
            continue
        value = to_cel(value)
        for later_kind, later_name in steps[position:]:
            value = (
                _select(value, later_name)
                if later_kind == "."
                else _index(value, celtypes.StringType(later_name))
            )
        return value
    return value


# --- int64 arithmetic without celpy's per-operation decorator cost --------------------------------
# Same results and the same exceptions as ``celtypes.IntType``'s operators (truncating division and
# a remainder with the dividend's sign, ValueError("overflow") outside int64); any other operand
# types go to celpy's function unchanged.


def _sign(value: int) -> int:
    return -1 if value < 0 else 1


def _int_operation(original: Callable[[Any, Any], Any], compute: Callable[[int, int], int]):
    IntType = celtypes.IntType

    def operation(left: Any, right: Any) -> Any:
        if type(left) is IntType and type(right) is IntType:
            return _int(compute(int(left), int(right)))
        return original(left, right)

    return operation


def _truncating_division(left: int, right: int) -> int:
    return _sign(left) * _sign(right) * (abs(left) // abs(right))


def _remainder(left: int, right: int) -> int:
    return _sign(left) * (abs(left) % abs(right))


_FUNCTIONS: dict[str, Callable] = {
    **base_functions,
    "_+_": _int_operation(base_functions["_+_"], lambda left, right: left + right),
    "_-_": _int_operation(base_functions["_-_"], lambda left, right: left - right),
    "_*_": _int_operation(base_functions["_*_"], lambda left, right: left * right),
    "_/_": _int_operation(base_functions["_/_"], _truncating_division),
    "_%_": _int_operation(base_functions["_%_"], _remainder),
}


# --- The compiler: one method per grammar rule, mirroring celpy.evaluation.Evaluator -------------

_RELATIONS = {
    "relation_lt": "_<_",
    "relation_le": "_<=_",
    "relation_ge": "_>=_",
    "relation_gt": "_>_",
    "relation_eq": "_==_",
    "relation_ne": "_!=_",
    "relation_in": "_in_",
}
_ADDITIONS = {"addition_add": "_+_", "addition_sub": "_-_"}
_MULTIPLICATIONS = {"multiplication_div": "_/_", "multiplication_mul": "_*_", "multiplication_mod": "_%_"}
_UNARY = {"unary_not": "!_", "unary_neg": "-_"}
_MACRO_METHODS = frozenset({"map", "filter", "all", "exists", "exists_one", "reduce", "min"})


def _binary(
    op_data: str,
    op_name: str,
    left: Closure,
    right: Closure,
    *,
    division: bool = False,
    overflow: bool = False,
) -> Closure:
    function = _FUNCTIONS[op_name]

    def evaluate(activation):
        left_value, right_value = left(activation), right(activation)
        try:
            return function(left_value, right_value)
        except TypeError as ex:
            return CELEvalError(
                f"found no matching overload for {op_data!r} applied to "
                f"'({type(left_value)}, {type(right_value)})'",
                ex.__class__,
                ex.args,
            )
        except ZeroDivisionError as ex:
            if not division:
                raise
            return CELEvalError("modulus or divide by zero", ex.__class__, ex.args)
        except (ValueError, OverflowError) as ex:
            if not overflow:
                raise
            return CELEvalError("return error for overflow", ex.__class__, ex.args)

    return evaluate


def _call(
    name: str, function: Callable, arguments: list[Closure], receiver: Closure | None = None
) -> Closure:
    """A function or method call as celpy's ``function_eval`` / ``method_eval`` makes it."""

    def evaluate(activation):
        target = receiver(activation) if receiver is not None else None
        values = [argument(activation) for argument in arguments]
        if receiver is not None and isinstance(target, CELEvalError):
            return target
        for value in values:
            if isinstance(value, CELEvalError):
                return value
        try:
            return function(target, *values) if receiver is not None else function(*values)
        except ValueError as ex:
            return CELEvalError("return error for overflow", ex.__class__, ex.args)
        except (TypeError, AttributeError) as ex:
            return CELEvalError("no such overload", ex.__class__, ex.args)

    return evaluate


class _Compiler:
    def __init__(self, variables: frozenset[str]):
        self.variables = variables

    # The whole expression is a path from a variable: evaluated without any CEL conversion.
    def whole_path(self, tree: lark.Tree) -> tuple[str, tuple[tuple[str, str], ...]] | None:
        node = tree
        for rule in (
            "expr",
            "conditionalor",
            "conditionaland",
            "relation",
            "addition",
            "multiplication",
            "unary",
        ):
            if node.data != rule or len(node.children) != 1:
                return None
            node = node.children[0]
        return self._path(node) if node.data == "member" else None

    def _path(self, member: lark.Tree) -> tuple[str, tuple[tuple[str, str], ...]] | None:
        """``record.a['b'].c`` as ``("record", ((".", "a"), ("[]", "b"), (".", "c")))``."""
        steps: list[tuple[str, str]] = []
        node = member.children[0]
        while True:
            if node.data == "member_dot":
                steps.append((".", node.children[1].value))
                node = node.children[0].children[0]
            elif node.data == "member_index" and self._string_literal(node.children[1]) is not None:
                steps.append(("[]", self._string_literal(node.children[1])))
                node = node.children[0].children[0]
            elif node.data == "primary" and node.children[0].data == "ident":
                name = node.children[0].children[0].value
                if name not in self.variables or not steps:
                    return None
                return name, tuple(reversed(steps))
            else:
                return None

    def _string_literal(self, expr: lark.Tree) -> str | None:
        node = expr
        for rule in (
            "expr",
            "conditionalor",
            "conditionaland",
            "relation",
            "addition",
            "multiplication",
            "unary",
            "member",
            "primary",
            "literal",
        ):
            if not isinstance(node, lark.Tree) or node.data != rule or len(node.children) != 1:
                return None
            node = node.children[0]
        if isinstance(node, lark.Token) and node.type in ("STRING_LIT", "MLSTRING_LIT"):
            return str(celstr(node))
        return None

    # expr: conditionalor ["?" conditionalor ":" expr]
    def expr(self, tree: lark.Tree) -> Closure:
        if len(tree.children) == 1:
            return self.conditionalor(tree.children[0])
        condition = self.conditionalor(tree.children[0])
        when_true = self.conditionalor(tree.children[1])
        when_false = self.expr(tree.children[2])
        choose = base_functions["_?_:_"]

        def evaluate(activation):
            condition_value = condition(activation)
            left = right = celtypes.BoolType(False)
            if condition_value:
                left = when_true(activation)
            else:
                right = when_false(activation)
            try:
                return choose(condition_value, left, right)
            except TypeError as ex:
                return CELEvalError(
                    f"found no matching overload for _?_:_ applied to "
                    f"'({type(condition_value)}, {type(left)}, {type(right)})'",
                    ex.__class__,
                    ex.args,
                )

        return evaluate

    def _logical(
        self, tree: lark.Tree, own: str, inner: Callable[[lark.Tree], Closure], op_name: str
    ) -> Closure:
        if len(tree.children) == 1:
            return inner(tree.children[0])
        left = getattr(self, own)(tree.children[0])
        right = inner(tree.children[1])
        function = base_functions[op_name]

        def evaluate(activation):
            left_value, right_value = left(activation), right(activation)  # celpy evaluates both
            try:
                return function(left_value, right_value)
            except TypeError as ex:
                return CELEvalError(
                    f"found no matching overload for {op_name} applied to "
                    f"'({type(left_value)}, {type(right_value)})'",
                    ex.__class__,
                    ex.args,
                )

        return evaluate

    def conditionalor(self, tree: lark.Tree) -> Closure:
        return self._logical(tree, "conditionalor", self.conditionaland, "_||_")

    def conditionaland(self, tree: lark.Tree) -> Closure:
        return self._logical(tree, "conditionaland", self.relation, "_&&_")

    def _operation(
        self,
        tree: lark.Tree,
        own: str,
        inner: Callable[[lark.Tree], Closure],
        names: dict[str, str],
        **flags: bool,
    ) -> Closure:
        if len(tree.children) == 1:
            return inner(tree.children[0])
        operator_tree, right_tree = tree.children
        left = getattr(self, own)(operator_tree.children[0])
        return _binary(str(operator_tree.data), names[operator_tree.data], left, inner(right_tree), **flags)

    def relation(self, tree: lark.Tree) -> Closure:
        return self._operation(tree, "relation", self.addition, _RELATIONS)

    def addition(self, tree: lark.Tree) -> Closure:
        return self._operation(tree, "addition", self.multiplication, _ADDITIONS, overflow=True)

    def multiplication(self, tree: lark.Tree) -> Closure:
        return self._operation(
            tree, "multiplication", self.unary, _MULTIPLICATIONS, division=True, overflow=True
        )

    def unary(self, tree: lark.Tree) -> Closure:
        if len(tree.children) == 1:
            return self.member(tree.children[0])
        operator_tree, operand_tree = tree.children
        operand = self.unary(operand_tree)
        function = base_functions[_UNARY[operator_tree.data]]
        op_data = str(operator_tree.data)

        def evaluate(activation):
            value = operand(activation)
            try:
                return function(value)
            except TypeError as ex:
                return CELEvalError(
                    f"found no matching overload for {op_data!r} applied to '({type(value)})'",
                    ex.__class__,
                    ex.args,
                )
            except ValueError as ex:
                return CELEvalError("return error for overflow", ex.__class__, ex.args)

        return evaluate

    def member(self, tree: lark.Tree) -> Closure:
        path = self._path(tree)
        if path is not None:
            name, steps = path
            return lambda activation: _to_cel_or_error(_walk_raw(activation[name], steps))
        child = tree.children[0]
        if child.data == "primary":
            return self.primary(child)
        if child.data == "member_dot":
            target = self.member(child.children[0])
            name = child.children[1].value
            return lambda activation: _select(target(activation), name)
        if child.data == "member_index":
            target = self.member(child.children[0])
            index = self.expr(child.children[1])
            return lambda activation: _index(target(activation), index(activation))
        if child.data == "member_dot_arg":
            return self.member_dot_arg(child)
        raise _Unsupported(child.data)  # member_object: protobuf message construction

    def member_dot_arg(self, tree: lark.Tree) -> Closure:
        name = tree.children[1].value
        if name in _MACRO_METHODS or name not in base_functions:
            raise _Unsupported(name)
        receiver = self.member(tree.children[0])
        arguments = (
            [self.expr(child) for child in tree.children[2].children] if len(tree.children) == 3 else []
        )
        return _call(name, base_functions[name], arguments, receiver)

    def primary(self, tree: lark.Tree) -> Closure:
        child = tree.children[0]
        kind = child.data
        if kind == "literal":
            value = _literal(child)
            return lambda activation: value
        if kind == "paren_expr":
            return self.expr(child.children[0])
        if kind == "list_lit":
            if not child.children:
                return lambda activation: celtypes.ListType()
            items = [self.expr(item) for item in child.children[0].children]

            def make_list(activation):
                values = [item(activation) for item in items]
                for value in values:
                    if isinstance(value, CELEvalError):
                        return value
                return celtypes.ListType(values)

            return make_list
        if kind == "map_lit":
            if not child.children:
                return lambda activation: celtypes.MapType()
            parts = [self.expr(item) for item in child.children[0].children]
            pairs = list(zip(parts[0::2], parts[1::2], strict=True))

            def make_map(activation):
                result = celtypes.MapType()
                try:
                    for key_closure, value_closure in pairs:
                        key, value = key_closure(activation), value_closure(activation)
                        if key in result:
                            raise ValueError(f"Duplicate key {key!r}")
                        result[key] = value  # celpy keeps an error value inside the map, as here
                except (ValueError, TypeError) as ex:
                    return CELEvalError(ex.args[0], ex.__class__, ex.args)
                return result

            return make_map
        if kind == "ident":
            name = child.children[0].value
            if name not in self.variables:
                raise _Unsupported(name)  # a type name (int, string…) or an unknown reference
            return lambda activation: to_cel(activation[name])
        if kind == "ident_arg":
            name = child.children[0].value
            arguments = (
                [self.expr(item) for item in child.children[1].children] if len(child.children) == 2 else []
            )
            if name == "has":
                inner = arguments[0]
                return lambda activation: celtypes.BoolType(not isinstance(inner(activation), CELEvalError))
            if name == "dyn":
                inner = arguments[0]
                return inner
            if name not in base_functions:
                raise _Unsupported(name)
            return _call(name, base_functions[name], arguments)
        raise _Unsupported(kind)  # dot_ident, dot_ident_arg: package-qualified names


def _to_cel_or_error(value: Any) -> Any:
    return value if isinstance(value, CELEvalError) else to_cel(value)


def _literal(tree: lark.Tree) -> Any:
    """A literal's value, as ``Evaluator.literal`` computes it (errors are values too)."""
    token = tree.children[0]
    try:
        if token.type == "FLOAT_LIT":
            return celtypes.DoubleType(token.value)
        if token.type == "INT_LIT":
            return celtypes.IntType(token.value)
        if token.type == "UINT_LIT":
            return celtypes.UintType(token.value[:-1])
        if token.type in ("MLSTRING_LIT", "STRING_LIT"):
            return celstr(token)
        if token.type == "BYTES_LIT":
            return celbytes(token)
        if token.type == "BOOL_LIT":
            return celtypes.BoolType(token.value.lower() == "true")
        if token.type == "NULL_LIT":
            return None
    except ValueError as ex:
        return CELEvalError(ex.args[0], ex.__class__, ex.args)
    raise _Unsupported(token.type)
