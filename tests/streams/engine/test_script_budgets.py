"""Every evaluation of a user expression runs under a budget enforced inside the evaluator.

Each script bomb of issue 18 ends in a rejection of the record with its reason, in bounded time,
in previews (through the API) and in runs alike; an expression nested too deeply is refused at
import with a 400 and the reason; NaN and infinity are a rejection, never a 500."""

import time

import pytest

from streams.engine import services as engine_services
from streams.engine.cel import BudgetExceeded, CelError, cel_check, cel_compile
from streams.models import StreamRun
from tests.streams.engine.conftest import chain

pytestmark = pytest.mark.django_db

# The issue's script: 100 x 100 iterations per record, ~1 s each on celpy's interpreter.
NESTED_MAPS = "size(record.L.map(a, record.L.map(b, a + b))) > 0"
HUNDRED = {"L": list(range(100))}


def rejected(expression: str, record: dict, *, variables=("record",)) -> tuple[str, float]:
    """The reason ``expression`` is rejected for ``record``, and how long the evaluation took."""
    program = cel_compile(expression, variables)
    started = time.monotonic()
    with pytest.raises(CelError) as raised:
        program.evaluate(dict(record=record))
    return str(raised.value), time.monotonic() - started


def preview(api, stream, records):
    started = time.monotonic()
    response = api.post(f"/streams/{stream.pk}/preview", {"records": records}, format="json")
    return response, time.monotonic() - started


# --- Steps ----------------------------------------------------------------------------------------------


def test_nested_comprehensions_over_100_element_lists_are_rejected_within_the_step_budget():
    reason, elapsed = rejected(NESTED_MAPS, HUNDRED)
    assert reason == "the expression exceeded its budget of 10000 steps (STREAM_SCRIPT_MAX_STEPS)"
    assert elapsed < 2


def test_the_step_budget_is_a_setting(settings):
    settings.STREAM_SCRIPT_MAX_STEPS = 100_000
    settings.STREAM_SCRIPT_MAX_COLLECTION_SIZE = 20_000
    assert cel_compile(NESTED_MAPS).evaluate({"record": HUNDRED}) is True
    settings.STREAM_SCRIPT_MAX_STEPS = 50
    reason, _ = rejected("record.L.map(a, a + 1)", HUNDRED)
    assert reason == "the expression exceeded its budget of 50 steps (STREAM_SCRIPT_MAX_STEPS)"


def test_ordinary_comprehensions_stay_well_inside_the_budget():
    record = {"items": [{"price": 2, "quantity": index} for index in range(500)]}
    program = cel_compile("record.items.map(i, i.price * i.quantity).filter(v, v > 10).size()")
    assert program.evaluate({"record": record}) == 494


def test_membership_in_a_large_list_costs_its_size_inside_a_comprehension():
    record = {"L": list(range(5000))}
    reason, elapsed = rejected("record.L.filter(x, x in record.L).size() > 0", record)
    assert "budget of 10000 steps" in reason
    assert elapsed < 2


def test_one_pass_over_a_large_list_is_cheap_and_allowed():
    # One step per 32 elements: a single search of 50,000 elements costs 1,562 steps.
    assert cel_compile("49999 in record.L && size(record.L) == 50000").evaluate(
        {"record": {"L": list(range(50_000))}}
    )


def test_a_script_bomb_in_a_run_rejects_its_records_and_the_run_goes_on(make_stream):
    stream = make_stream(chain(("bomb", "script", {"expression": NESTED_MAPS})))
    records = [HUNDRED] * 20 + [{"L": [1, 2]}]
    started = time.monotonic()
    run = engine_services.stream_run_execute(stream_id=stream.pk, records=records)
    assert time.monotonic() - started < 5
    assert run.status == StreamRun.Status.SUCCEEDED
    assert run.node_counts["bomb"] == {"in": 21, "out": 1, "rejected": 20}
    assert run.rejections[0]["reason"] == (
        "the expression exceeded its budget of 10000 steps (STREAM_SCRIPT_MAX_STEPS)"
    )


# --- Strings and collections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        # The issue's nested doubling: 27 doublings of one character would be 128 MiB.
        "[record.s]" + ".map(a, a + a)" * 27,
        "size(['x'].map(a, [a + a].map(b, [b + b].map(c, [c + c].map(d, [d + d]"
        + ".map(e, e + e)" * 23
        + "))))) > 0",
        "record.s" + " + record.s" * 60,
    ],
)
def test_string_doubling_stops_at_the_string_length_limit(expression):
    reason, elapsed = rejected(expression, {"s": "x" * 4096})
    assert reason.startswith("the expression built a string of ")
    assert reason.endswith("characters, more than 100000 (STREAM_SCRIPT_MAX_STRING_LENGTH)")
    assert elapsed < 2


def test_shared_references_cannot_double_a_list_past_the_collection_limit():
    # Each level holds the previous one twice: 2^30 leaves in a few objects, until converted.
    reason, elapsed = rejected("[record.L]" + ".map(a, [a, a])" * 30, {"L": [1, 2, 3]})
    assert reason.startswith("the expression built a list or map of ")
    assert reason.endswith("more than 10000 (STREAM_SCRIPT_MAX_COLLECTION_SIZE)")
    assert elapsed < 2


def test_a_product_of_two_lists_stops_at_the_collection_limit(settings):
    settings.STREAM_SCRIPT_MAX_STEPS = 10_000_000  # the size limit, not the steps, stops this one
    reason, elapsed = rejected("record.L.map(a, record.L.map(b, [a, b]))", {"L": list(range(200))})
    assert "more than 10000 (STREAM_SCRIPT_MAX_COLLECTION_SIZE)" in reason
    assert elapsed < 2


def test_regular_expressions_run_in_linear_time():
    # Catastrophic backtracking for Python's re (celpy's); RE2 answers at once.
    program = cel_compile("record.s.matches('^(a+)+$')")
    started = time.monotonic()
    assert program.evaluate({"record": {"s": "a" * 50_000 + "b"}}) is False
    assert time.monotonic() - started < 0.5
    reason, _ = rejected("record.s.matches('(a')", {"s": "a"})
    assert reason == "invalid regular expression: '(a'"


# --- Non-finite numbers and values that cannot be stored ------------------------------------------------


@pytest.mark.parametrize(
    "expression", ["0.0 / 0.0", "1e308 * 10.0", "-1e308 * 10.0", "{'v': [double(record.big) * 1e300]}"]
)
def test_a_non_finite_result_is_a_rejection_with_a_reason(expression):
    reason, _ = rejected(expression, {"big": 1e10})
    assert reason == "the result is not a finite number (NaN or infinity): it has no JSON form"


def test_a_result_that_cannot_be_stored_is_a_rejection_with_a_reason():
    assert rejected("{'s': 'a\\x00b'}", {})[0] == (
        "the result holds a NUL character (\\u0000), which cannot be stored"
    )
    assert (
        rejected("'\\ud800'", {})[0].startswith(
            ("the result holds a lone surrogate", "Not a valid", "invalid")
        )
        or cel_check("'\\ud800'") is not None
    )


def test_integer_overflow_is_a_rejection_with_a_reason():
    assert rejected("record.n * 2", {"n": 2**62})[0] == "return error for overflow"


# --- Nesting depth, at import ---------------------------------------------------------------------------

DEEP = {
    "parentheses": "(" * 2000 + "1" + ")" * 2000,
    "lists": "[" * 2000 + "]" * 2000,
    "maps": "{1:" * 2000 + "1" + "}" * 2000,
    "negations": "-" * 2000 + "1",
    "additions": "1" + " + 1" * 2000,
    "calls": "f(" * 2000 + "1" + ")" * 2000,
    "ternaries": "a?1:" * 2000 + "2",
}


@pytest.mark.parametrize("shape", DEEP)
def test_an_expression_nested_2000_deep_is_refused_at_import_with_a_reason(api, solution, shape):
    config = chain(("deep", "script", {"expression": DEEP[shape]}))
    started = time.monotonic()
    response = api.post(
        "/streams/import", {"solutionId": str(solution.pk), "streamConfig": config}, format="json"
    )
    assert time.monotonic() - started < 10
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    [detail] = [detail for detail in body["details"] if detail["field"].endswith("config.expression")]
    assert detail["message"].startswith("The expression is nested ")
    assert detail["message"].endswith("at most 100 are allowed (STREAM_SCRIPT_MAX_DEPTH).")


def test_nesting_within_the_limit_is_accepted_and_runs():
    expression = "(" * 45 + "record.n" + " + 1)" * 45
    assert cel_check(expression) is None
    assert cel_compile(expression).evaluate({"record": {"n": 1}}) == 46
    assert cel_check(" || ".join(f"record.n == {index}" for index in range(90))) is None


def test_a_deeply_nested_record_value_is_a_rejection_not_a_crash():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    reason, _ = rejected("{'copy': record.deep}", {"deep": deep})
    assert reason.startswith("RecursionError") or "STREAM_SCRIPT_MAX_COLLECTION_SIZE" in reason


# --- Previews answer within seconds, whatever they are given --------------------------------------------


def test_the_issues_preview_is_answered_in_seconds_with_each_record_rejected(api, make_stream):
    stream = make_stream(chain(("bomb", "script", {"expression": NESTED_MAPS})))
    response, elapsed = preview(api, stream, [HUNDRED] * 60)
    assert response.status_code == 200
    assert elapsed < 6
    bomb = response.json()["nodes"][1]
    assert bomb["counts"] == {"in": 60, "out": 0, "rejected": 60}
    assert {rejection["reason"] for rejection in bomb["rejections"]} <= {
        "the expression exceeded its budget of 10000 steps (STREAM_SCRIPT_MAX_STEPS)",
        "the preview's time budget (3 s for all its records, STREAM_SCRIPT_PREVIEW_SECONDS) ran out "
        "before this record",
    }


def test_a_preview_stops_evaluating_when_its_time_budget_runs_out(api, make_stream, settings):
    settings.STREAM_SCRIPT_PREVIEW_SECONDS = 0.5
    settings.STREAM_SCRIPT_MAX_STEPS = 10_000_000  # each record may take long: only time stops them
    stream = make_stream(chain(("slow", "map", {"fields": {"n": NESTED_MAPS}})))
    response, elapsed = preview(api, stream, [HUNDRED] * 1000)
    assert response.status_code == 200
    assert elapsed < 4
    slow = response.json()["nodes"][1]
    assert slow["counts"]["in"] == 1000
    assert slow["counts"]["rejected"] > 900
    assert slow["rejections"][-1]["reason"] == (
        "fields.n: the preview's time budget (0.5 s for all its records, STREAM_SCRIPT_PREVIEW_SECONDS) "
        "ran out before this record"
    )


def test_a_preview_producing_nan_answers_200_with_the_rejection(api, make_stream):
    stream = make_stream(chain(("shape", "map", {"fields": {"ratio": "record.a / record.b"}})))
    response, _ = preview(
        api, stream, [{"a": 0.0, "b": 0.0}, {"a": 1e308, "b": 1e-308}, {"a": 1.0, "b": 2.0}]
    )
    assert response.status_code == 200, response.content
    shape = response.json()["nodes"][1]
    assert shape["counts"] == {"in": 3, "out": 1, "rejected": 2}
    assert [rejection["reason"] for rejection in shape["rejections"]] == [
        "fields.ratio: the result is not a finite number (NaN or infinity): it has no JSON form"
    ] * 2
    assert shape["records"] == [{"a": 1.0, "b": 2.0, "ratio": 0.5}]


def test_budget_exceeded_is_a_cel_error():
    assert issubclass(BudgetExceeded, CelError)
