"""Idempotency in every outcome, on both serving tiers (issue 20, Must show 2).

Each case is one outcome of a first request (accepted, sent to data correction for each reason,
refused before the ledger for each reason) followed by its replay with the same body and a request
with another body under the same key: ``/ingest`` (``uniqueId``), report usage (``Idempotency-Key``)
and send data (``Idempotency-Key``). Every case runs on the view tier (``config.wsgi``) and on the
ASGI tier (``config.asgi``) with cold caches (the event loop hands the request over) and warm ones
(the event loop settles it), in worlds of their own. The answers are asserted exactly, and the ASGI
tier's must be the view's (the view is the contract), as must the ledger and the corrections left.

The rule: a key is held by whatever its first request's outcome was, counted or sent to
correction; a replay answers duplicate; another body under a report's or send data's key is 409
``IDEMPOTENCY_KEY_REUSED`` (an ``/ingest`` ``uniqueId`` is Amberflo's dedup key: another body is a
duplicate). A request refused before the ledger (400, 404) holds no key: another, valid body under
it is counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from collection.models import CollectedBatch
from metering.compat import billing
from metering.models import DataCorrection, MeterType, UsageRecord
from tests.collection.conftest import data_url
from tests.config.test_tier_parity import (
    Send,
    World,
    call_asgi,
    call_wsgi,
    clear_caches,
    comparable,
    make_world,
    warm,
)
from tests.support.asgi import in_one_loop

pytestmark = pytest.mark.django_db(transaction=True)

DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def event(unique_id: str, **fields) -> bytes:
    body = {
        "meterApiName": "api-calls",
        "customerId": "cus_1",
        "meterValue": 1,
        "meterTimeInMillis": now_ms(),
        "uniqueId": unique_id,
    }
    return json.dumps({**body, **fields}).encode()


def report(**fields) -> bytes:
    body = {"value": 3, "customerId": "cus_1", "meterName": "api-calls"}
    return json.dumps({**body, **fields}).encode()


def iso(millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(millis / 1000))


def archive(world: World) -> None:
    """The meter type is archived after its first report (and the report lookups forget it)."""
    MeterType.objects.filter(account=world.account, api_name="api-calls").update(
        status=MeterType.Status.ARCHIVED
    )
    billing._meter_cache.clear()


Step = Send | Callable[[World], None]


@dataclass
class Outcome:
    """A first request, its replay, another body under its key, and what the view answers."""

    first: Callable[[World, str], Send]
    other: Callable[[World, str], Send]
    answers: list[tuple]
    counted: int  # ledger records left
    corrections: int  # corrections left
    between: Callable[[World], None] | None = None  # done between the first request and its replay


def ingest(**fields) -> Callable[[World, str], Send]:
    fields = {"meterTimeInMillis": now_ms(), **fields}  # one time: a replay is the same body

    def make(world: World, key: str) -> Send:
        headers = [("x-api-key", world.api_key), ("prefer", "return=representation")]
        return Send("/ingest", event(key, **fields), headers)

    return make


def reporting(**fields) -> Callable[[World, str], Send]:
    def make(world: World, key: str) -> Send:
        return Send(
            "/billing/meters/usage",
            report(**fields),
            [("x-api-key", world.api_key), ("idempotency-key", key)],
        )

    return make


def sending(body: bytes, *, active: bool = True) -> Callable[[World, str], Send]:
    def make(world: World, key: str) -> Send:
        collector = world.collector if active else world.creating
        return Send(data_url(collector), body, [*world.bearer(), ("idempotency-key", key)])

    return make


def old() -> int:
    return now_ms() - 40 * DAY_MS  # before the 35-day acceptance window


def future() -> int:
    return now_ms() + 3_600_000  # past the clock skew allowed


INGESTED = ("accepted", "duplicates", "corrections")


def outcomes() -> dict[str, Outcome]:
    ingest_counted = [(200, (1, 0, 0)), (200, (0, 1, 0)), (200, (0, 1, 0))]

    def ingest_corrected(reason: str) -> list[tuple]:
        return [(200, (0, 0, 1), [reason]), (200, (0, 1, 0)), (200, (0, 1, 0))]

    def report_corrected() -> list[tuple]:
        return [(202, "queued"), (200, "duplicate"), (409, "IDEMPOTENCY_KEY_REUSED")]

    return {
        # /ingest: the uniqueId is held by the first outcome, counted or corrected.
        "ingest accepted": Outcome(ingest(), ingest(meterValue=7), ingest_counted, 1, 0),
        "ingest unknown meter": Outcome(
            ingest(meterApiName="no-such"),
            ingest(meterApiName="no-such", meterValue=7),
            ingest_corrected("NO_MATCHING_METER"),
            0,
            1,
        ),
        "ingest archived meter": Outcome(
            ingest(meterApiName="old-calls"),
            ingest(meterApiName="old-calls", meterValue=7),
            ingest_corrected("ARCHIVED_METER_TYPE"),
            0,
            1,
        ),
        # The world's meter types are active from their creation, so the window refusing first is theirs.
        "ingest before its meter type's active window": Outcome(
            ingest(meterTimeInMillis=old()),
            ingest(meterTimeInMillis=old(), meterValue=7),
            ingest_corrected("OUTSIDE_ACTIVE_WINDOW"),
            0,
            1,
        ),
        "ingest in the future": Outcome(
            ingest(meterTimeInMillis=future()),
            ingest(meterTimeInMillis=future(), meterValue=7),
            ingest_corrected("FUTURE_TIMESTAMP"),
            0,
            1,
        ),
        "ingest malformed value": Outcome(
            ingest(meterValue="x"),
            ingest(),
            [(400, "VALIDATION_ERROR"), (400, "VALIDATION_ERROR"), (200, (1, 0, 0))],
            1,
            0,
        ),
        "ingest accepted, then its meter archived": Outcome(
            ingest(),
            ingest(meterValue=7),
            ingest_counted,
            1,
            0,
            between=archive,
        ),
        # Report usage: the key is held by the first outcome; another body is 409.
        "report accepted": Outcome(
            reporting(),
            reporting(value=4),
            [(202, "queued"), (200, "duplicate"), (409, "IDEMPOTENCY_KEY_REUSED")],
            1,
            0,
        ),
        "report for a customer without a meter": Outcome(
            reporting(customerId="nobody"), reporting(customerId="nobody", value=4), report_corrected(), 0, 1
        ),
        "report too old": Outcome(
            reporting(timestamp=iso(old())),
            reporting(timestamp=iso(old()), value=4),
            report_corrected(),
            0,
            1,
        ),
        "report in the future": Outcome(
            reporting(timestamp=iso(future())),
            reporting(timestamp=iso(future()), value=4),
            report_corrected(),
            0,
            1,
        ),
        "report unknown meter": Outcome(
            reporting(meterName="no-such"),
            reporting(),
            [(404, "METER_NOT_FOUND"), (404, "METER_NOT_FOUND"), (202, "queued")],
            1,
            0,
        ),
        "report archived meter": Outcome(
            reporting(meterName="old-calls"),
            reporting(),
            [(400, "METER_ARCHIVED"), (400, "METER_ARCHIVED"), (202, "queued")],
            1,
            0,
        ),
        "report malformed value": Outcome(
            reporting(value="x"),
            reporting(),
            [(400, "VALIDATION_ERROR"), (400, "VALIDATION_ERROR"), (202, "queued")],
            1,
            0,
        ),
        "report accepted, then its meter archived": Outcome(
            reporting(),
            reporting(value=4),
            [(202, "queued"), (200, "duplicate"), (409, "IDEMPOTENCY_KEY_REUSED")],
            1,
            0,
            between=archive,
        ),
        # Send data: a replay answers the first ingestion id; another body is 409.
        "send data stored": Outcome(
            sending(b'{"data": {"n": 1}}'),
            sending(b'{"data": {"n": 2}}'),
            [(200, "stored"), (200, "replayed"), (409, "IDEMPOTENCY_KEY_REUSED")],
            0,
            0,
        ),
        "send data to a collector not active": Outcome(
            sending(b'{"data": {"n": 1}}', active=False),
            sending(b'{"data": {"n": 2}}'),
            [(409, "COLLECTOR_NOT_ACTIVE"), (409, "COLLECTOR_NOT_ACTIVE"), (200, "stored")],
            0,
            0,
        ),
        "send data malformed": Outcome(
            sending(b'{"datum": 1}'),
            sending(b'{"data": {"n": 2}}'),
            [(400, "VALIDATION_ERROR"), (400, "VALIDATION_ERROR"), (200, "stored")],
            0,
            0,
        ),
    }


def summary(send: Send, answer: tuple[int, dict[str, str], bytes]) -> tuple:
    """What the outcome is, in the terms of ``Outcome.answers``."""
    status, headers, content = answer
    body = json.loads(content) if content else {}
    if status >= 300:
        return (status, body["code"])
    if send.path == "/ingest":
        counts = tuple(int(headers[f"x-ingest-{name}"]) for name in INGESTED)
        reasons = [correction["reason"] for correction in body.get("corrections", [])]
        return (status, counts, reasons) if reasons else (status, counts)
    if send.path == "/billing/meters/usage":
        return (status, body["status"])
    return (status, "replayed" if headers.get("idempotent-replayed") == "true" else "stored")


def key_for(caches_warm: bool) -> str:
    """The same key on both tiers (their worlds are separate accounts), so the bodies compare."""
    return f"key-{'warm' if caches_warm else 'cold'}"


def steps(world: World, outcome: Outcome, key: str) -> list[Step]:
    first = outcome.first(world, key)
    between = [outcome.between] if outcome.between else []
    return [first, *between, outcome.first(world, key), outcome.other(world, key)]


def run(world: World, outcome: Outcome, *, tier: str, caches_warm: bool) -> list[tuple]:
    """The outcome's requests on one tier: (summary, comparable answer, raw answer) each."""
    if caches_warm:
        warm(world)
    else:
        clear_caches()
    sequence = steps(world, outcome, key_for(caches_warm))
    answers: list[tuple] = []
    for step in sequence:
        if not isinstance(step, Send):
            step(world)
            continue
        if tier == "wsgi":
            answer = call_wsgi(step)
        else:
            (answer,) = in_one_loop(call_asgi(step))
        answers.append((summary(step, answer), comparable(answer), answer))
    return answers


def left(world: World, key: str) -> tuple[int, int]:
    return (
        UsageRecord.objects.filter(account=world.account, idempotency_key__contains=key).count(),
        DataCorrection.objects.filter(account=world.account, idempotency_key__contains=key).count(),
    )


@pytest.fixture
def worlds(db):
    from config.api.ratelimit import limiter

    limiter.reset()
    clear_caches()
    yield make_world("view-tier"), make_world("asgi-tier")
    clear_caches()
    limiter.reset()


@pytest.mark.parametrize("caches_warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("name", list(outcomes()))
def test_every_outcome_replayed_and_reused_answers_alike_on_both_tiers(worlds, name, caches_warm):
    outcome = outcomes()[name]
    view_world, asgi_world = worlds

    view = run(view_world, outcome, tier="wsgi", caches_warm=caches_warm)
    if not caches_warm:
        clear_caches()
    asgi = run(asgi_world, outcome, tier="asgi", caches_warm=caches_warm)

    assert [answer[0] for answer in view] == outcome.answers
    assert [answer[1] for answer in asgi] == [answer[1] for answer in view]
    for world, tier in ((view_world, "wsgi"), (asgi_world, "asgi")):
        assert left(world, key_for(caches_warm)) == (outcome.counted, outcome.corrections), tier


@pytest.mark.parametrize("caches_warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("tier", ["wsgi", "asgi"])
def test_a_send_data_replay_answers_the_first_ingestion_id_and_stores_once(worlds, tier, caches_warm):
    world = worlds[0] if tier == "wsgi" else worlds[1]

    answers = run(world, outcomes()["send data stored"], tier=tier, caches_warm=caches_warm)

    first, replay = (json.loads(raw[2]) for _, _, raw in answers[:2])
    assert replay == first and set(first) == {"ingestionId"}
    payloads = CollectedBatch.objects.filter(collector=world.collector).values_list("payload", flat=True)
    assert list(payloads).count('{"n": 1}') == 1
