"""Over generated expressions and records, every evaluation ends within its budget in a result or
a rejection (``CelError`` with a reason), and never raises anything else out of the engine."""

import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.cel import CelError, CelInvalid, cel_check, cel_compile

FIELDS = ("a", "b", "s", "L", "M", "n")
VARIABLES = ("x", "y")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=30) | st.dictionaries(st.sampled_from(FIELDS), children, max_size=6)
    ),
    max_leaves=200,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "a": json_values,
        "b": json_scalars,
        "s": st.text(max_size=200) | st.just("a" * 5000 + "b"),
        "L": st.lists(st.integers(min_value=-1000, max_value=1000), max_size=200),
        "M": st.lists(st.lists(st.text(max_size=5), max_size=20), max_size=20),
        "n": st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False),
    },
)

literals = st.sampled_from(
    [
        "0",
        "1",
        "-7",
        "9223372036854775807",
        "2u",
        "1.5",
        "1e308",
        "0.0",
        "'x'",
        "'(a+)+$'",
        "''",
        "b'ab'",
        "true",
        "false",
        "null",
        "[]",
        "{}",
        "int",
        "string",
    ]
)
paths = st.sampled_from([f"record.{name}" for name in FIELDS] + ["record", "record.a.b", "record['L']"])


def expressions(locals_: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    atoms = literals | paths | (st.sampled_from(locals_) if locals_ else st.nothing())

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(
            inner,
            st.sampled_from(["+", "-", "*", "/", "%", "==", "!=", "<", ">=", "in", "&&", "||"]),
            inner,
        ).map(lambda parts: f"({parts[0]} {parts[1]} {parts[2]})")
        unary = st.tuples(st.sampled_from(["-", "!"]), inner).map(lambda parts: f"{parts[0]}({parts[1]})")
        ternary = st.tuples(inner, inner, inner).map(lambda parts: f"({parts[0]} ? {parts[1]} : {parts[2]})")
        lists = st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
        maps = st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda pairs: "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}"
        )
        calls = st.tuples(
            st.sampled_from(["size", "string", "int", "double", "has", "dyn", "type"]), inner
        ).map(lambda parts: f"{parts[0]}({parts[1]})")
        methods = st.tuples(
            inner, st.sampled_from(["contains", "startsWith", "matches", "endsWith"]), inner
        ).map(lambda parts: f"{parts[0]}.{parts[1]}({parts[2]})")
        index = st.tuples(inner, inner).map(lambda parts: f"{parts[0]}[{parts[1]}]")
        select = st.tuples(inner, st.sampled_from(FIELDS)).map(lambda parts: f"{parts[0]}.{parts[1]}")
        return binary | unary | ternary | lists | maps | calls | methods | index | select

    return st.recursive(atoms, extend, max_leaves=12)


@st.composite
def programs(draw) -> str:
    """An expression, often with comprehensions (nested, over the record's lists and built ones)."""
    variable = draw(st.sampled_from(VARIABLES))
    macro = draw(st.sampled_from(["map", "filter", "all", "exists", "exists_one"]))
    source = draw(paths | st.just("record.L") | st.just("record.M") | expressions())
    body = draw(expressions((variable,)))
    if draw(st.booleans()):
        inner_variable = "y" if variable == "x" else "x"
        inner_macro = draw(st.sampled_from(["map", "filter", "exists"]))
        inner_body = draw(expressions((variable, inner_variable)))
        body = f"{source}.{inner_macro}({inner_variable}, {inner_body})"
    comprehension = f"{source}.{macro}({variable}, {body})"
    doubling = draw(st.integers(min_value=0, max_value=30))
    if doubling:
        comprehension = f"[{comprehension}]" + f".map({variable}, [{variable}, {variable}])" * doubling
    return draw(st.sampled_from([comprehension, f"size({comprehension})"]) | expressions())


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(expression=programs(), record=records)
def test_every_evaluation_ends_within_its_budget_in_a_result_or_a_rejection(expression, record):
    problem = cel_check(expression)
    if problem is not None:  # refused at import, with a reason: never run
        assert isinstance(problem, str) and problem
        return
    try:
        program = cel_compile(expression)
    except CelInvalid:
        raise AssertionError("cel_check accepted what cel_compile refuses") from None
    started = time.monotonic()
    try:
        result = program.evaluate({"record": record})
    except CelError as rejection:
        assert str(rejection)
    else:
        assert_json(result)
    # 10,000 steps of at most 16 KiB or 32 elements each: well under a second even on a loaded machine.
    assert time.monotonic() - started < 2


def assert_json(value) -> None:
    """The result is a JSON value the rest of the engine can store."""
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, str):
        assert "\x00" not in value
    elif isinstance(value, list):
        for item in value:
            assert_json(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            assert_json(item)
    else:
        assert value is None or isinstance(value, bool | int)
