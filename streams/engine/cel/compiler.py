"""The CEL compiler: a celpy syntax tree turned into nested Python closures, built once.

celpy (cel-python) is the CEL implementation: its parser builds the tree and its ``celtypes`` and
``base_functions`` define every operator and function. The closures call those very functions in
the order celpy's ``Evaluator`` does, with the same error values, so results and messages are
celpy's; what they add is speed (celpy's interpreter needs ~130 µs even for the literal ``1``)
and the budget (``budget.Evaluation``), which they enforce as they go: comprehension iterations,
sizes of what they read, lengths of what they build.

Every construct an expression may use is compiled, comprehensions included, so no expression ever
runs on celpy's own interpreter, where no budget could be enforced. Two differences from celpy,
both towards the CEL specification: an error inside a comprehension is a value (``true ||
[0].map(x, 1 / x)`` is ``true``; celpy raised it out of the whole expression), and ``matches``
uses RE2 (linear time; celpy used Python's backtracking ``re``). celpy's non-standard ``reduce``
and ``min`` macros and message construction (``Type{field: …}``) are refused at import.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import celpy
import lark
import re2
from celpy import celtypes
from celpy.evaluation import CELEvalError, base_functions, celbytes, celstr

from streams.engine.cel.budget import Evaluation, checked_result, significant
from streams.engine.cel.values import int64, to_cel

Closure = Callable[[dict[str, Any]], Any]
KEY = Evaluation.KEY


class Unsupported(Exception):
    """The expression uses a construct the engine does not run; ``str(error)`` says which."""


_environment: celpy.Environment | None = None
_environment_lock = threading.Lock()


def parse(text: str) -> lark.Tree:
    global _environment
    with _environment_lock:  # lark's parser object is shared; parse one expression at a time
        if _environment is None:
            _environment = celpy.Environment()
        return _environment.compile(text)


def _celpy_constant(text: str) -> Any:
    """What celpy answers for a name that is no variable (a type name, an unknown name)."""
    tree = parse(text)
    with _environment_lock:
        program = _environment.program(tree)
    try:
        return program.evaluate({})
    except CELEvalError as error:
        return error


# --- Reading the activation's values ---------------------------------------------------------------

_SIZED = frozenset(
    {
        celtypes.StringType,
        celtypes.BytesType,
        celtypes.ListType,
        celtypes.MapType,
        str,
        bytes,
        list,
        dict,
    }
)


def converted(evaluation: Evaluation, raw: Any) -> Any:
    """``to_cel(raw)``, once per list or map per evaluation: a comprehension that reads
    ``record.items`` on every iteration converts it once."""
    if type(raw) is dict or type(raw) is list:
        known = evaluation.converted.get(id(raw))
        if known is not None:
            return known[1]
        value = to_cel(raw)
        evaluation.converted[id(raw)] = (raw, value)
        return value
    if isinstance(raw, CELEvalError):
        return raw
    return to_cel(raw)


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


def walk_raw(value: Any, steps: tuple[tuple[str, str], ...]) -> Any:
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


# --- Functions: celpy's, with int64 arithmetic made cheaper and RE2 for ``matches`` -------------
# Same results and exceptions as ``celtypes.IntType``'s operators (truncating division, a remainder
# with the dividend's sign, ValueError("overflow") outside int64); other operand types go to
# celpy's function unchanged.


def _sign(value: int) -> int:
    return -1 if value < 0 else 1


def _int_operation(original: Callable[[Any, Any], Any], compute: Callable[[int, int], int]):
    IntType = celtypes.IntType

    def operation(left: Any, right: Any) -> Any:
        if type(left) is IntType and type(right) is IntType:
            return int64(compute(int(left), int(right)))
        return original(left, right)

    return operation


def _truncating_division(left: int, right: int) -> int:
    return _sign(left) * _sign(right) * (abs(left) // abs(right))


def _remainder(left: int, right: int) -> int:
    return _sign(left) * (abs(left) % abs(right))


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def _matches(text: Any, pattern: Any) -> Any:
    """CEL ``matches``: RE2 syntax and RE2's linear time (no catastrophic backtracking)."""
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise TypeError("matches applies to strings")
    try:
        regex = _regex(str(pattern))
    except re2.error as ex:
        return CELEvalError(f"invalid regular expression: {str(pattern)!r}", ValueError, (str(ex),))
    return celtypes.BoolType(regex.search(str(text)) is not None)


FUNCTIONS: dict[str, Callable] = {
    **base_functions,
    "_+_": _int_operation(base_functions["_+_"], lambda left, right: left + right),
    "_-_": _int_operation(base_functions["_-_"], lambda left, right: left - right),
    "_*_": _int_operation(base_functions["_*_"], lambda left, right: left * right),
    "_/_": _int_operation(base_functions["_/_"], _truncating_division),
    "_%_": _int_operation(base_functions["_%_"], _remainder),
    "matches": _matches,
}
_GROWING = frozenset({"_+_", "_*_"})  # operators whose result can be longer than their operands


def _binary(
    op_data: str,
    op_name: str,
    left: Closure,
    right: Closure,
    *,
    division: bool = False,
    overflow: bool = False,
) -> Closure:
    function = FUNCTIONS[op_name]
    grows = op_name in _GROWING

    def evaluate(activation):
        left_value, right_value = left(activation), right(activation)
        if type(left_value) in _SIZED or type(right_value) in _SIZED:
            activation[KEY].operands(left_value, right_value)
        try:
            result = function(left_value, right_value)
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
        if grows and type(result) in _SIZED:
            return checked_result(activation[KEY], result)
        return result

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
        evaluation = activation[KEY]
        evaluation.operands(target, *values)
        try:
            result = function(target, *values) if receiver is not None else function(*values)
        except ValueError as ex:
            return CELEvalError("return error for overflow", ex.__class__, ex.args)
        except (TypeError, AttributeError) as ex:
            return CELEvalError("no such overload", ex.__class__, ex.args)
        return checked_result(evaluation, result) if type(result) in _SIZED else result

    return evaluate


def _undeclared(name: str) -> CELEvalError:
    return CELEvalError(f"undeclared reference to {name!r}", KeyError, (name,))


# --- Comprehensions -------------------------------------------------------------------------------

_ABSENT = object()
_MACROS = frozenset({"map", "filter", "all", "exists", "exists_one"})
_logical_and = base_functions["_&&_"]
_logical_or = base_functions["_||_"]


def _comprehension(name: str, variable: str, receiver: Closure, body: Closure, body_cost: int) -> Closure:
    """``receiver.name(variable, body)``; each iteration costs ``body_cost`` steps."""

    def evaluate(activation):
        source = receiver(activation)
        if isinstance(source, CELEvalError):
            return source
        if isinstance(source, celtypes.MapType):
            items = list(source.keys())
        elif isinstance(source, celtypes.ListType):
            items = source
        else:
            return CELEvalError(
                f"found no matching overload for {name} applied to '({type(source)})'", TypeError, None
            )
        evaluation = activation[KEY]
        saved = activation.get(variable, _ABSENT)
        try:
            return _run(name, items, variable, body, body_cost, activation, evaluation)
        finally:
            if saved is _ABSENT:
                activation.pop(variable, None)
            else:
                activation[variable] = saved

    return evaluate


def _run(name, items, variable, body, body_cost, activation, evaluation):
    if name == "all" or name == "exists":
        # celpy folds every element with && (all) or || (exists), errors included; once the fold
        # is false (all) or true (exists) nothing can change it, so the loop stops there.
        fold, result = (
            (_logical_and, celtypes.BoolType(True))
            if name == "all"
            else (
                _logical_or,
                celtypes.BoolType(False),
            )
        )
        decided = name == "exists"
        for item in items:
            evaluation.iteration(body_cost)
            activation[variable] = item
            value = body(activation)
            try:
                result = fold(result, value)
            except TypeError as ex:
                result = CELEvalError("no such overload", ex.__class__, ex.args)
            if isinstance(result, celtypes.BoolType) and bool(result) is decided:
                break
        return result
    out, count = [], 0
    for item in items:
        evaluation.iteration(body_cost)
        activation[variable] = item
        value = body(activation)
        if isinstance(value, CELEvalError):
            return value
        if name == "map":
            out.append(value)
        elif value and name == "filter":
            out.append(item)
        elif value:
            count += 1
    if name == "exists_one":
        return celtypes.BoolType(count == 1)
    return evaluation.built(celtypes.ListType(out))


# --- The compiler: one method per grammar rule, mirroring celpy.evaluation.Evaluator -------------

_OPERATORS = {
    "relation_lt": ("_<_", {}),
    "relation_le": ("_<=_", {}),
    "relation_ge": ("_>=_", {}),
    "relation_gt": ("_>_", {}),
    "relation_eq": ("_==_", {}),
    "relation_ne": ("_!=_", {}),
    "relation_in": ("_in_", {}),
    "addition_add": ("_+_", {"overflow": True}),
    "addition_sub": ("_-_", {"overflow": True}),
    "multiplication_div": ("_/_", {"division": True, "overflow": True}),
    "multiplication_mul": ("_*_", {"division": True, "overflow": True}),
    "multiplication_mod": ("_%_", {"division": True, "overflow": True}),
}
_UNARY = {"unary_not": "!_", "unary_neg": "-_"}
Path = tuple[str, tuple[tuple[str, str], ...]]


class Compiler:
    """Compiles one expression. ``compile`` skips the grammar's pass-through rules first, so the
    Python stack grows by a few frames per level of real nesting (which import bounds), never by
    a dozen per parenthesis."""

    def __init__(self, variables: frozenset[str]):
        self.variables = variables
        self.locals: list[str] = []  # comprehension variables in scope, innermost last
        self.nodes = 0  # nodes compiled so far: a comprehension body's static cost

    def compile(self, tree: lark.Tree) -> Closure:
        node = significant(tree)
        self.nodes += 1
        method = getattr(self, "_" + node.data, None)
        if method is None:
            raise Unsupported(f"{node.data} is not supported")
        return method(node)

    # The whole expression is a path from a variable: evaluated without any CEL conversion.
    def whole_path(self, tree: lark.Tree) -> Path | None:
        return self._path(significant(tree))

    def _path(self, node: lark.Tree) -> Path | None:
        """``record.a['b'].c`` as ``("record", ((".", "a"), ("[]", "b"), (".", "c")))``."""
        steps: list[tuple[str, str]] = []
        while True:
            if node.data == "member_dot":
                steps.append((".", node.children[1].value))
                node = significant(node.children[0])
            elif node.data == "member_index" and self._string_literal(node.children[1]) is not None:
                steps.append(("[]", self._string_literal(node.children[1])))
                node = significant(node.children[0])
            elif node.data == "ident":
                name = node.children[0].value
                if name not in self.variables or name in self.locals or not steps:
                    return None
                return name, tuple(reversed(steps))
            else:
                return None

    def _string_literal(self, tree: lark.Tree) -> str | None:
        node = significant(tree)
        if node.data != "literal":
            return None
        token = node.children[0]
        if isinstance(token, lark.Token) and token.type in ("STRING_LIT", "MLSTRING_LIT"):
            return str(celstr(token))
        return None

    # expr: conditionalor ["?" conditionalor ":" expr]
    def _expr(self, tree: lark.Tree) -> Closure:
        condition, when_true, when_false = (self.compile(child) for child in tree.children)
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

    def _logical(self, tree: lark.Tree, op_name: str) -> Closure:
        left, right = self.compile(tree.children[0]), self.compile(tree.children[1])
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

    def _conditionalor(self, tree: lark.Tree) -> Closure:
        return self._logical(tree, "_||_")

    def _conditionaland(self, tree: lark.Tree) -> Closure:
        return self._logical(tree, "_&&_")

    def _operation(self, tree: lark.Tree) -> Closure:
        operator_tree, right_tree = tree.children
        op_name, flags = _OPERATORS[operator_tree.data]
        left = self.compile(operator_tree.children[0])
        return _binary(str(operator_tree.data), op_name, left, self.compile(right_tree), **flags)

    _relation = _addition = _multiplication = _operation

    def _unary(self, tree: lark.Tree) -> Closure:
        operator_tree, operand_tree = tree.children
        operand = self.compile(operand_tree)
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

    def _member_dot(self, tree: lark.Tree) -> Closure:
        path = self._path(tree)
        if path is not None:
            name, steps = path
            return lambda activation: converted(activation[KEY], walk_raw(activation[name], steps))
        target = self.compile(tree.children[0])
        name = tree.children[1].value
        return lambda activation: _select(target(activation), name)

    def _member_index(self, tree: lark.Tree) -> Closure:
        path = self._path(tree)
        if path is not None:
            name, steps = path
            return lambda activation: converted(activation[KEY], walk_raw(activation[name], steps))
        target = self.compile(tree.children[0])
        index = self.compile(tree.children[1])
        return lambda activation: _index(target(activation), index(activation))

    def _member_object(self, tree: lark.Tree) -> Closure:
        raise Unsupported("message construction (Type{field: value}) is not supported")

    def _arguments(self, tree: lark.Tree, position: int) -> list[lark.Tree]:
        return list(tree.children[position].children) if len(tree.children) > position else []

    def _member_dot_arg(self, tree: lark.Tree) -> Closure:
        name = tree.children[1].value
        arguments = self._arguments(tree, 2)
        if name in ("reduce", "min"):
            raise Unsupported(f"{name}() is not a CEL macro (use map, filter, all, exists or exists_one)")
        if name in _MACROS:
            return self._macro(tree, name, arguments)
        receiver = self.compile(tree.children[0])
        compiled = [self.compile(argument) for argument in arguments]
        if name not in FUNCTIONS:
            error = _undeclared(name)
            return lambda activation: error
        return _call(name, FUNCTIONS[name], compiled, receiver)

    def _macro(self, tree: lark.Tree, name: str, arguments: list[lark.Tree]) -> Closure:
        variable_tree = significant(arguments[0]) if len(arguments) == 2 else None
        if variable_tree is None or variable_tree.data != "ident":
            raise Unsupported(f"{name}() takes a variable and an expression: {name}(x, expression)")
        variable = variable_tree.children[0].value
        receiver = self.compile(tree.children[0])
        before = self.nodes
        self.locals.append(variable)
        try:
            body = self.compile(arguments[1])
        finally:
            self.locals.pop()
        return _comprehension(name, variable, receiver, body, max(1, self.nodes - before))

    def _paren_expr(self, tree: lark.Tree) -> Closure:
        return self.compile(tree.children[0])

    def _literal(self, tree: lark.Tree) -> Closure:
        value = _literal(tree)
        return lambda activation: value

    def _list_lit(self, tree: lark.Tree) -> Closure:
        if not tree.children:
            return lambda activation: celtypes.ListType()
        items = [self.compile(item) for item in tree.children[0].children]

        def make_list(activation):
            values = [item(activation) for item in items]
            for value in values:
                if isinstance(value, CELEvalError):
                    return value
            return activation[KEY].built(celtypes.ListType(values))

        return make_list

    def _map_lit(self, tree: lark.Tree) -> Closure:
        if not tree.children:
            return lambda activation: celtypes.MapType()
        parts = [self.compile(item) for item in tree.children[0].children]
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
            return activation[KEY].built(result)

        return make_map

    def _ident(self, tree: lark.Tree, *, root: bool = False) -> Closure:
        name = tree.children[0].value
        if name in self.locals and not root:
            return lambda activation: activation[name]
        if name in self.variables:
            return lambda activation: converted(activation[KEY], activation[name])
        value = _celpy_constant(
            ("." if root else "") + name
        )  # a type name (int, string…) or an undeclared reference
        return lambda activation: value

    def _dot_ident(self, tree: lark.Tree) -> Closure:
        return self._ident(tree, root=True)

    def _ident_arg(self, tree: lark.Tree) -> Closure:
        name = tree.children[0].value
        arguments = [self.compile(item) for item in self._arguments(tree, 1)]
        if name == "has" and len(arguments) == 1:
            inner = arguments[0]
            return lambda activation: celtypes.BoolType(not isinstance(inner(activation), CELEvalError))
        if name == "dyn" and len(arguments) == 1:
            return arguments[0]
        if name not in FUNCTIONS:
            error = _undeclared(name)
            return lambda activation: error
        return _call(name, FUNCTIONS[name], arguments)

    _dot_ident_arg = _ident_arg


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
    raise Unsupported(f"the literal {token.value!r} is not supported")
