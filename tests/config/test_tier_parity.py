"""The two serving tiers answer every hot-path request alike (issue 19, item 6).

Each case is a sequence of requests, sent to the WSGI application (``config.wsgi``, as gunicorn
calls it: repeated headers joined with ",", a chunked body ended by the server) and to the ASGI
application (``config.asgi``, as uvicorn calls it: every header as sent), each in a world of its
own (an account with the same collectors, meter types, credentials), and the answers must be the
same: status, JSON body and headers. What differs by nature is made alike first: generated ids
(ingestion and request ids) and the rate-limit counters that move with the clock.

Every case runs twice: with cold caches (the event loop hands the request over to the view, so
both tiers run the pipeline synchronously) and warm ones (the event loop serves what memory
settles), so the hand-over and the loop are each held to the WSGI answer.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from dataclasses import dataclass, field

import pytest

from accounts import services as account_services
from accounts.credentials import principal_cache
from collection.models import CollectedBatch
from collection.selectors import active_collectors
from config.api.ratelimit import limiter
from config.asgi import application as asgi_application
from config.wsgi import application as wsgi_application
from metering import services as metering_services
from metering.compat import billing
from metering.models import DataCorrection, MeterType, UsageRecord
from tests.collection.conftest import data_url, make_collector
from tests.conftest import issue_token, make_access
from tests.support.asgi import in_one_loop, request

pytestmark = pytest.mark.django_db(transaction=True)

UUID_TEXT = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CLOCK_HEADERS = {"ratelimit-remaining", "ratelimit-reset", "retry-after"}


@dataclass
class Send:
    """One request. ``headers`` are pairs, so a header can repeat; ``body_sent`` is what actually
    arrives when it differs from what Content-Length declares; ``chunked`` sends no length."""

    path: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    method: str = "POST"
    chunked: bool = False
    body_sent: bytes | None = None
    host: str = "testserver"


@dataclass
class World:
    account: object
    token: str
    reader_token: str
    revoked_token: str
    api_key: str
    collector: object
    creating: object
    theirs: object

    def bearer(self, token: str | None = None) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token or self.token}")]


def make_world(name: str) -> World:
    account = account_services.account_get_or_create(name=name)
    other = account_services.account_get_or_create(name=f"{name}-other")
    access, secret = make_access(account, name="writer")
    reader, reader_secret = make_access(account, name="reader", scopes=["online-collection:read:collectors"])
    revoked, revoked_secret = make_access(account, name="revoked")
    revoked_token = issue_token(revoked, revoked_secret)
    account_services.application_access_revoke(access=revoked)
    _, api_key = account_services.api_key_create(account=account, name="ingest")
    for api_name, status in (
        ("api-calls", MeterType.Status.ACTIVE),
        ("old-calls", MeterType.Status.ARCHIVED),
    ):
        meter_type = metering_services.meter_type_create(
            account_id=account.pk,
            name=api_name,
            api_name=api_name,
            unit="requests",
            aggregation="SUM",
            reset_cron="0 0 1 * *",
            timezone="Etc/UTC",
            status=status,
        )
        metering_services.meter_create(
            account_id=account.pk, meter_type_id=meter_type.pk, meter_key="default", user_id="cus_1"
        )
    return World(
        account=account,
        token=issue_token(access, secret),
        reader_token=issue_token(reader, reader_secret),
        revoked_token=revoked_token,
        api_key=api_key,
        collector=make_collector(account),
        creating=make_collector(account, "Creating", active=False),
        theirs=make_collector(other, "Theirs"),
    )


def event(unique_id: str, *, value: int = 1, meter: str = "api-calls", millis: int | None = None) -> bytes:
    return json.dumps(
        {
            "meterApiName": meter,
            "customerId": "cus_1",
            "meterValue": value,
            "meterTimeInMillis": int(time.time() * 1000) if millis is None else millis,
            "uniqueId": unique_id,
        }
    ).encode()


def report(value: int = 3, meter: str = "api-calls") -> bytes:
    return json.dumps({"value": value, "customerId": "cus_1", "meterName": meter}).encode()


# --- the two tiers ---------------------------------------------------------------------------


def call_wsgi(send: Send) -> tuple[int, dict[str, str], bytes]:
    body = send.body if send.body_sent is None else send.body_sent
    environ = {
        "REQUEST_METHOD": send.method,
        "PATH_INFO": send.path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": send.host,
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,  # gunicorn's: the stream ends where the body ends
        "CONTENT_TYPE": "application/json",
    }
    if send.chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(len(send.body))
    joined: dict[str, list[str]] = {}
    for name, value in send.headers:  # repeated headers joined as gunicorn joins them
        joined.setdefault("HTTP_" + name.upper().replace("-", "_"), []).append(value)
    environ.update({key: ",".join(values) for key, values in joined.items()})
    answer: dict = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = int(status.split()[0])
        answer["headers"] = {name.lower(): value for name, value in headers}

    chunks = wsgi_application(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], content


async def call_asgi(send: Send) -> tuple[int, dict[str, str], bytes]:
    body = send.body if send.body_sent is None else send.body_sent
    headers = [("host", send.host), ("content-type", "application/json")]
    headers.append(
        ("transfer-encoding", "chunked") if send.chunked else ("content-length", str(len(send.body)))
    )
    answer: dict = {"body": b""}
    chunks = [body[:7], body[7:]] if send.chunked else [body]  # a chunked body arrives in pieces

    async def receive():
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await asyncio_sleep_forever()

    async def respond(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {name.decode().lower(): value.decode() for name, value in message["headers"]}
        else:
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": send.method,
        "scheme": "http",
        "path": send.path,
        "raw_path": send.path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(name.encode(), value.encode()) for name, value in [*headers, *send.headers]],
    }
    await asgi_application(scope, receive, respond)
    return answer["status"], answer["headers"], answer["body"]


async def asyncio_sleep_forever():
    import asyncio

    await asyncio.sleep(3600)


def comparable(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], object]:
    status, headers, content = answer
    content = UUID_TEXT.sub(b"<uuid>", content)
    headers = {
        name: ("<n>" if name in CLOCK_HEADERS else value)
        for name, value in headers.items()
        if name not in ("server", "date")
    }
    return status, headers, json.loads(content) if content else None


# --- the cases -------------------------------------------------------------------------------


def cases(world: World) -> dict[str, list[Send]]:
    send_data = data_url(world.collector)
    token = world.bearer()
    key = [("x-api-key", world.api_key)]
    data = b'{"data": {"n": 1}}'
    replayed = event("r1")  # one body sent twice (built twice, its time could differ by a millisecond)
    return {
        # Issue 19 item 6.
        "repeated X-Account-Id": [
            Send(
                send_data, data, [*token, ("x-account-id", "bogus"), ("x-account-id", str(world.account.pk))]
            )
        ],
        "repeated Authorization": [Send(send_data, data, [("authorization", "Bearer bad"), *token])],
        "repeated Idempotency-Key, then the same again": [
            Send(
                "/billing/meters/usage",
                report(),
                [*key, ("idempotency-key", "d1"), ("idempotency-key", "d2")],
            ),
            Send(
                "/billing/meters/usage",
                report(),
                [*key, ("idempotency-key", "d1"), ("idempotency-key", "d2")],
            ),
            Send("/billing/meters/usage", report(), [*key, ("idempotency-key", "d2")]),
        ],
        "chunked body": [
            Send(send_data, data, token, chunked=True),
            Send("/ingest", event("c1"), key, chunked=True),
        ],
        "chunked body over the limit": [
            Send(send_data, b'{"data": "' + b"x" * 1_100_000 + b'"}', token, chunked=True)
        ],
        "bad Host": [
            Send(send_data, data, token, host="evil.example"),
            Send("/ingest", event("h1"), key, host="x"),
        ],
        "Content-Length larger than the body": [
            Send(send_data, data + b"    ", token, body_sent=data),
            Send("/ingest", event("l1") + b"  ", key, body_sent=event("l1")),
        ],
        # The usual ones.
        "bad credentials": [
            Send(send_data, data, [("authorization", "Bearer nope")]),
            Send(send_data, data, [("authorization", "Basic abc")]),
            Send("/ingest", event("b1"), [("x-api-key", "nope")]),
        ],
        "revoked token": [Send(send_data, data, world.bearer(world.revoked_token))],
        "missing credentials": [
            Send(send_data, data),
            Send("/billing/meters/usage", report(), [("idempotency-key", "m")]),
        ],
        "missing scope": [Send(send_data, data, world.bearer(world.reader_token))],
        "identity headers": [
            Send(send_data, data, [*token, ("x-account-id", str(world.account.pk).upper())]),
            Send(send_data, data, [*token, ("x-account-id", str(uuid.uuid4()))]),
        ],
        "another account's collector": [Send(data_url(world.theirs), data, token)],
        "collector not active": [Send(data_url(world.creating), data, token)],
        "not a collector id": [Send("/online-collection/collectors/abc/data", data, token)],
        "malformed bodies": [
            Send(send_data, b"{not json", token),
            Send(send_data, b'{"datum": 1}', token),
            Send("/ingest", b'{"customerId": "cus_1"}', key),
            Send("/billing/meters/usage", b'{"value": "x"}', [*key, ("idempotency-key", "bad")]),
            Send("/billing/meters/usage", report(), key),  # no idempotency key
        ],
        "oversized body": [Send(send_data, b'{"data": "' + b"x" * 1_100_000 + b'"}', token)],
        "wrong method": [Send(send_data, b"", token, method="GET")],
        "replays": [
            Send(send_data, data, [*token, ("idempotency-key", "r1")]),
            Send(send_data, data, [*token, ("idempotency-key", "r1")]),
            Send("/ingest", replayed, key),
            Send("/ingest", replayed, key),
            Send("/billing/meters/usage", report(), [*key, ("idempotency-key", "r1")]),
            Send("/billing/meters/usage", report(), [*key, ("idempotency-key", "r1")]),
        ],
        "other bodies under one key": [
            Send(send_data, data, [*token, ("idempotency-key", "o1")]),
            Send(send_data, b'{"data": 2}', [*token, ("idempotency-key", "o1")]),
            Send("/billing/meters/usage", report(3), [*key, ("idempotency-key", "o1")]),
            Send("/billing/meters/usage", report(4), [*key, ("idempotency-key", "o1")]),
        ],
        "archived and unknown meters": [
            Send("/billing/meters/usage", report(meter="old-calls"), [*key, ("idempotency-key", "a1")]),
            Send("/billing/meters/usage", report(meter="no-such"), [*key, ("idempotency-key", "a2")]),
            Send("/ingest", event("a3", meter="old-calls"), [*key, ("prefer", "return=representation")]),
            Send("/ingest", event("a4", meter="no-such"), [*key, ("prefer", "return=representation")]),
        ],
    }


def warm(world: World) -> None:
    """Fill this world's caches as a first request of each kind does (on WSGI: the view)."""
    assert call_wsgi(Send(data_url(world.collector), b'{"data": [0]}', world.bearer()))[0] == 200
    key = [("x-api-key", world.api_key)]
    warming = f"warm-{uuid.uuid4()}"
    assert call_wsgi(Send("/ingest", event(warming, value=0), key))[0] == 200
    assert call_wsgi(Send("/billing/meters/usage", report(0), [*key, ("idempotency-key", warming)]))[0] == 202


def clear_caches() -> None:
    principal_cache.clear()
    active_collectors.clear()
    billing._meter_cache.clear()


@pytest.fixture
def worlds(db):
    limiter.reset()
    clear_caches()
    yield make_world("wsgi-tier"), make_world("asgi-tier")
    clear_caches()
    limiter.reset()


def run_case(name: str, worlds, *, caches_warm: bool):
    wsgi_world, asgi_world = worlds
    if caches_warm:
        warm(wsgi_world)
        warm(asgi_world)
    else:
        clear_caches()
    wsgi_answers = [comparable(call_wsgi(send)) for send in cases(wsgi_world)[name]]
    if not caches_warm:
        clear_caches()

    async def in_order():
        return [comparable(await call_asgi(send)) for send in cases(asgi_world)[name]]

    (asgi_answers,) = in_one_loop(in_order())
    return wsgi_answers, asgi_answers


CASES = [
    "repeated X-Account-Id",
    "repeated Authorization",
    "repeated Idempotency-Key, then the same again",
    "chunked body",
    "chunked body over the limit",
    "bad Host",
    "Content-Length larger than the body",
    "bad credentials",
    "revoked token",
    "missing credentials",
    "missing scope",
    "identity headers",
    "another account's collector",
    "collector not active",
    "not a collector id",
    "malformed bodies",
    "oversized body",
    "wrong method",
    "replays",
    "other bodies under one key",
    "archived and unknown meters",
]


@pytest.mark.parametrize("caches_warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("name", CASES)
def test_both_tiers_give_the_same_answers(worlds, name, caches_warm):
    wsgi_answers, asgi_answers = run_case(name, worlds, caches_warm=caches_warm)

    assert asgi_answers == wsgi_answers


def test_the_cases_cover_every_declared_case(worlds):
    assert sorted(CASES) == sorted(cases(worlds[0]))


# --- what the view's answer is, in the cases where the tiers differed before ------------------


def test_repeated_identity_and_credential_headers_are_refused_on_both_tiers(worlds):
    for caches_warm in (False, True):
        for name, status, code in (
            ("repeated X-Account-Id", 403, "ACCOUNT_MISMATCH"),
            ("repeated Authorization", 401, "INVALID_TOKEN"),
        ):
            wsgi_answers, asgi_answers = run_case(name, worlds, caches_warm=caches_warm)
            assert [(s, body["code"]) for s, _, body in wsgi_answers] == [(status, code)]
            assert asgi_answers == wsgi_answers


def test_a_report_with_two_idempotency_keys_is_counted_once_across_a_cold_and_a_warm_cache(worlds):
    wsgi_answers, asgi_answers = run_case(
        "repeated Idempotency-Key, then the same again", worlds, caches_warm=False
    )

    assert [status for status, _, _ in asgi_answers] == [202, 200, 202] == [s for s, _, _ in wsgi_answers]
    assert asgi_answers[1][2] == {"status": "duplicate", "idempotencyKey": "d1,d2"}
    for world in worlds:
        assert UsageRecord.objects.filter(account=world.account, idempotency_key="report:d1,d2").count() == 1


def test_a_chunked_body_is_stored_and_a_short_one_is_not_on_both_tiers(worlds):
    for name in ("chunked body", "Content-Length larger than the body"):
        wsgi_answers, asgi_answers = run_case(name, worlds, caches_warm=True)
        assert asgi_answers == wsgi_answers
    chunked = [s for s, _, _ in run_case("chunked body", worlds, caches_warm=False)[1]]
    assert chunked == [200, 200]
    for world in worlds:  # the chunked batch twice (warm and cold), the short one never
        payloads = list(
            CollectedBatch.objects.filter(collector=world.collector).values_list("payload", flat=True)
        )
        assert payloads.count('{"n": 1}') == 2


def test_an_event_sharing_a_unique_id_with_a_refused_one_in_the_same_group_is_its_duplicate(worlds):
    """The key answers with its first outcome (issue 20): the refused event holds the uniqueId, the
    later one in the same group is its duplicate, on the event loop as in the view."""
    _, asgi_world = worlds
    warm(asgi_world)
    key = [("x-api-key", asgi_world.api_key)]
    # Refused once its meter type is known: before the type's active window (it began at creation).
    before = int(time.time() * 1000) - 3600 * 1000

    refused, counted = in_one_loop(
        request(asgi_application, "/ingest", event("shared", millis=before), dict(key)),
        request(asgi_application, "/ingest", event("shared", value=5), dict(key)),
    )

    assert refused[1]["x-ingest-corrections"] == "1"
    assert (counted[1]["x-ingest-accepted"], counted[1]["x-ingest-duplicates"]) == ("0", "1")
    assert DataCorrection.objects.filter(account=asgi_world.account).count() == 1
    assert not UsageRecord.objects.filter(
        account=asgi_world.account, idempotency_key="ingest:api-calls:shared"
    ).exists()


def test_rate_limits_answer_alike_on_both_tiers(worlds, settings):
    settings.RATE_LIMIT_ENABLED = True
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "send_data": (1, 3600, 2), "ingest": (1, 3600, 1)}
    for world in worlds:
        warm(world)  # takes each bucket's first token
    limiter.reset()
    wsgi_world, asgi_world = worlds

    def burst(world):
        token, key = world.bearer(), [("x-api-key", world.api_key)]
        return [
            Send(data_url(world.collector), b'{"data": [1]}', token),
            Send(data_url(world.collector), b"{not json", token),  # takes a token, then 400
            Send(data_url(world.collector), b'{"data": [3]}', token),
            Send("/ingest", event("rl1"), key),
            Send("/ingest", event("rl2"), key),
        ]

    wsgi_answers = [comparable(call_wsgi(send)) for send in burst(wsgi_world)]

    async def in_order():
        return [comparable(await call_asgi(send)) for send in burst(asgi_world)]

    (asgi_answers,) = in_one_loop(in_order())

    assert [status for status, _, _ in wsgi_answers] == [200, 400, 429, 200, 429]
    assert asgi_answers == wsgi_answers
