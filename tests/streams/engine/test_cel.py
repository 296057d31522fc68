"""CEL in the engine: celpy's parser and semantics, evaluated by compiled closures.

The closures must answer exactly what celpy's own interpreter answers — value or error message —
for every expression they compile; these tests compare the two over a corpus of expressions and
records, including errors, int64 overflow, truncating division and mixed types."""

import re

import celpy
import pytest

from streams.engine.cel import CelError, CelInvalid, _message, cel_check, cel_compile, from_cel

RECORDS = [
    {
        "customer": {"id": "c1", "plan": "pro"},
        "bytes": 2048,
        "n": 3,
        "f": 1.5,
        "ok": True,
        "tags": ["a", "b"],
        "s": "abc",
        "z": None,
    },
    {"customer": {"id": "c2"}, "bytes": 0, "n": -7, "f": 0.0, "ok": False, "tags": [], "s": "", "z": 1},
    {"customer": "flat", "bytes": "12", "n": 9223372036854775807},
    {"n": -9223372036854775808, "bytes": 5},
    {},
]

EXPRESSIONS = [
    "record.customer.id",
    "1",
    "has(record.customer.plan) ? record.customer.plan : 'free'",
    "record.bytes / 1024",
    "record.bytes % 0",
    "record.n + 1",
    "record.n * 2",
    "-record.n",
    "!record.ok",
    "record.ok || record.missing",
    "record.missing || record.ok",
    "record.ok && record.missing",
    "record.f + 1",
    "record.f + 1.0",
    "double(record.bytes) / 1000.0",
    "int(record.bytes)",
    "string(record.n)",
    "size(record.s)",
    "size(record.tags)",
    "record.s.startsWith('a')",
    "record.s.endsWith('c')",
    "record.s.contains('b')",
    "record.s.matches('^a.c$')",
    "'a' in record.tags",
    "record.tags[0]",
    "record.tags[5]",
    "record['customer']['id']",
    "record.customer['plan']",
    "{'a': record.n, 'b': [1, record.s]}",
    "{'a': record.missing}",
    "{'a': 1, 'a': 2}",
    "[record.missing]",
    "record.z == null",
    "record.n > 2",
    "record.n >= 'x'",
    "record.s < 'b'",
    "record.customer == {'id': 'c1', 'plan': 'pro'}",
    "dyn(record.n)",
    "has(record.z)",
    "record.ok ? 1 : 'x'",
    "record.n ? 1 : 2",
    "record",
    "record.customer",
    "1u + 2u",
    "b'ab'",
    "timestamp('2023-01-01T00:00:00Z')",
    "duration('3600s')",
    '"\\u00e9" + record.s',
    "r'raw\\n'",
    "size(record)",
    "record.s + record.s",
    "record.n - 1",
    "0.1 + 0.2",
    "record.bytes / 0",
    "record.f / 0.0",
    "record.customer.id.size()",
    "record.missing.x",
    "has(record.customer.id)",
    "has(record.missing.x)",
    "record.n / -2",
    "-7 / 2",
    "-7 % 3",
    "7 % -3",
    "record.n % 4",
    "record.n * record.n",
    "record.n + record.n",
    "9223372036854775807 + 1",
    "-9223372036854775807 - 2",
    "record.n - 9223372036854775807",
    "record.n / 0",
    "record.n + true",
    "record.n + 1.5",
    "1 + 1u",
    "record.bytes * 3 + 7 / 2 - 1 % 5",
    "-(record.n)",
    "- -record.n",
    # Comprehensions and type names, compiled too.
    "record.tags.map(x, x + 'z')",
    "record.tags.exists(x, x == 'a')",
    "record.tags.all(x, x == 'a')",
    "record.tags.filter(x, x != 'a')",
    "record.tags.exists_one(x, x == 'b')",
    "record.tags.map(x, record.tags.map(y, x + y))",
    "record.tags.exists(x, x > 1)",
    "record.tags.all(x, x > 1)",
    "{'a': 1, 'b': 2}.map(k, k + '!')",
    "[1, 2, 3].map(x, x * record.n)",
    "[1, 2, 3].filter(x, x % 2 == 1).map(x, x * 10)",
    "type(record.n) == int",
    "type(record.s) == string",
    "undeclared_name + 1",
    "record.s.matches('^[a-c]+$')",
]

_ENVIRONMENT = celpy.Environment()


def celpy_answer(expression: str, record: dict):
    program = _ENVIRONMENT.program(_ENVIRONMENT.compile(expression))
    try:
        value = program.evaluate({"record": celpy.json_to_cel(record)})
    except celpy.CELEvalError as exc:
        return "error", _message(exc).replace("Token('RULE', ", "").replace("') applied", "' applied")
    try:
        return "value", from_cel(value)
    except CelError as exc:
        return "error", str(exc)


def engine_answer(expression: str, record: dict):
    try:
        return "value", cel_compile(expression).evaluate({"record": record})
    except CelError as exc:
        return "error", str(exc)


def typed(value):
    """``1 == True`` in Python: compare types too."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return type(value).__name__, value


def normalized(answer):
    kind, value = answer
    if kind == "value":
        return kind, typed(value)
    if kind == "error":
        # celpy prints the operator's rule as Token('RULE', 'addition_add'); the engine as 'addition_add'.
        value = value.replace("Token('RULE', '", "'").replace("'),", "',").replace("') ", "' ")
    return kind, value


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_engine_answers_what_celpy_answers(expression):
    for record in RECORDS:
        assert normalized(engine_answer(expression, record)) == normalized(
            celpy_answer(expression, record)
        ), record


def test_comprehensions_are_compiled_with_celpys_answers():
    record = {"tags": ["a", "bb", "a"], "n": 2}
    assert cel_compile("record.tags.map(x, x + 'z')").evaluate({"record": record}) == ["az", "bbz", "az"]
    assert cel_compile("record.tags.filter(x, x == 'a')").evaluate({"record": record}) == ["a", "a"]
    assert cel_compile("record.tags.exists_one(x, x == 'bb')").evaluate({"record": record}) is True
    assert cel_compile("{'k': 1, 'j': 2}.map(key, key)").evaluate({"record": record}) == ["k", "j"]
    # The comprehension's variable shadows the record's names only inside its body.
    assert (
        cel_compile("[10].map(record, record + 1)[0] + size(record.tags)").evaluate({"record": record}) == 14
    )
    assert cel_compile("[1, 2].map(x, [3, 4].map(x, x * 10))").evaluate({"record": record}) == [
        [30, 40],
        [30, 40],
    ]


def test_an_error_inside_a_comprehension_is_a_value_as_cel_says():
    # celpy's interpreter raised it out of the whole expression; CEL's || absorbs it.
    assert cel_compile("true || [0].map(x, 1 / x) == [1]").evaluate({"record": {}}) is True
    with pytest.raises(CelError, match="^modulus or divide by zero$"):
        cel_compile("[1, 0].map(x, 1 / x)").evaluate({"record": {}})


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("google.protobuf.Int32Value{value: 1}", "message construction"),
        ("[1, 2].reduce(r, i, 0, r + i)", "reduce() is not a CEL macro"),
        ("[1, 2].min()", "min() is not a CEL macro"),
        ("[1].map(x)", "map() takes a variable and an expression"),
        ("[1].map(1, 2)", "map() takes a variable and an expression"),
        ("record.a +", "syntax error"),
    ],
)
def test_what_the_engine_cannot_run_is_refused_with_a_reason(expression, reason):
    assert reason in cel_check(expression)
    with pytest.raises(CelInvalid, match=re.escape(reason)):
        cel_compile(expression)


def test_results_are_plain_json_values():
    result = cel_compile(
        "{'i': 2 * 3, 'd': 1.5, 's': 'x', 'b': true, 'n': null, 'l': [1, 'a'], "
        "'t': timestamp('2023-07-01T00:00:00Z')}"
    ).evaluate({"record": {}})
    assert result == {
        "i": 6,
        "d": 1.5,
        "s": "x",
        "b": True,
        "n": None,
        "l": [1, "a"],
        "t": "2023-07-01T00:00:00.000Z",
    }
    assert [type(value) for value in result.values()] == [int, float, str, bool, type(None), list, str]


def test_errors_carry_cels_message():
    with pytest.raises(CelError, match="^no such member in mapping: 'missing'$"):
        cel_compile("record.missing").evaluate({"record": {}})
    with pytest.raises(CelError, match="^modulus or divide by zero$"):
        cel_compile("record.n / 0").evaluate({"record": {"n": 1}})
    with pytest.raises(CelError, match="^return error for overflow$"):
        cel_compile("record.n * 2").evaluate({"record": {"n": 2**62}})


def test_a_bare_path_hands_back_the_records_own_value():
    nested = {"a": [1, 2]}
    assert cel_compile("record.x").evaluate({"record": {"x": nested}}) is nested


def test_nothing_is_evaluated_as_python():
    with pytest.raises(CelError):
        cel_compile("__import__('os').system('true')").evaluate({"record": {}})
