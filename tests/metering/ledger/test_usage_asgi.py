"""``POST /ingest`` and ``POST /billing/meters/usage`` under ASGI (config/fastpath.py,
metering/compat/ingest_asgi.py): requests settled from memory are answered on the event loop,
their records applied together with those of concurrent requests, each answered as the view
answers it; the rest goes to the view.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
from django.db import OperationalError

from accounts import services as account_services
from accounts.credentials import principal_cache
from config.api.ratelimit import limiter
from config.hot_routes import HOT_PATHS
from metering import services
from metering.compat import billing, ingest_asgi
from metering.compat.ingest_asgi import applier
from metering.models import DataCorrection, Meter, UsageRecord
from tests.support.asgi import Recorder, call, in_one_loop, request

pytestmark = pytest.mark.django_db(transaction=True)


def now_ms() -> int:
    return int(time.time() * 1000)


def event(unique_id: str, value: int = 1, customer: str = "cus_1", **extra) -> dict:
    return {
        "meterApiName": "api-calls",
        "customerId": customer,
        "meterValue": value,
        "meterTimeInMillis": now_ms(),
        "uniqueId": unique_id,
        **extra,
    }


def report_body(value: int = 3, customer: str = "cus_1", **extra) -> bytes:
    return json.dumps({"value": value, "customerId": customer, "meterName": "api-calls", **extra}).encode()


@pytest.fixture
def setup(account, settings):
    limiter.reset()
    billing._meter_cache.clear()
    meter_type = services.meter_type_create(
        account_id=account.pk,
        name="API calls",
        api_name="api-calls",
        unit="requests",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
    )
    meter = services.meter_create(
        account_id=account.pk, meter_type_id=meter_type.pk, meter_key="default", user_id="cus_1"
    )
    _, raw_key = account_services.api_key_create(
        account=account, name="ingest", scopes=["usage-metering:ingest:usage", "meter-report"]
    )
    key = {"x-api-key": raw_key}
    recorder = Recorder()
    app = HOT_PATHS.asgi(recorder, hot=recorder)
    # The first requests settle nothing from memory: the views answer them and fill the caches.
    assert call(app, "/ingest", json.dumps(event("warm", 0)).encode(), key)[0] == 200
    assert call(app, "/billing/meters/usage", report_body(0), {**key, "idempotency-key": "warm"})[0] == 202
    assert recorder.paths == ["/ingest", "/billing/meters/usage"]
    recorder.paths.clear()
    yield app, recorder, meter, key
    limiter.reset()
    billing._meter_cache.clear()


def value_of(meter: Meter) -> Decimal:
    meter.refresh_from_db()
    return meter.value


def test_ingest_is_answered_on_the_event_loop_and_counted(setup):
    app, recorder, meter, key = setup

    status, headers, body = call(app, "/ingest", json.dumps([event("e1", 2), event("e2", 5)]).encode(), key)

    assert (status, body, recorder.paths) == (200, "OK", [])
    assert (headers["x-ingest-accepted"], headers["x-ingest-duplicates"]) == ("2", "0")
    assert value_of(meter) == Decimal(7)
    assert set(UsageRecord.objects.filter(source="ingest").values_list("idempotency_key", flat=True)) >= {
        "ingest:api-calls:e1",
        "ingest:api-calls:e2",
    }


def test_ingest_with_prefer_representation_lists_duplicates_on_the_event_loop(setup):
    app, recorder, meter, key = setup
    first = event("e1", 2)
    call(app, "/ingest", json.dumps(first).encode(), key)

    status, headers, body = call(
        app,
        "/ingest",
        json.dumps([first, event("e3", 1)]).encode(),
        {**key, "prefer": "return=representation"},
    )

    assert (status, recorder.paths, headers["preference-applied"]) == (200, [], "return=representation")
    assert body["accepted"] == 1
    assert body["duplicates"] == [
        {"index": 0, "meterApiName": "api-calls", "uniqueId": "e1", "keyReused": False}
    ]
    assert value_of(meter) == Decimal(3)


def test_concurrent_ingest_requests_share_one_batch_and_a_repeated_event_counts_once(setup):
    app, recorder, meter, key = setup
    group = applier.shares

    async def many():
        answers = await asyncio.gather(
            *(request(app, "/ingest", json.dumps(event(f"c{n}", 1)).encode(), key) for n in range(20)),
            *(request(app, "/ingest", json.dumps(event("same", 10)).encode(), key) for _ in range(5)),
        )
        return answers, group.group().groups, group.group().values

    ((answers, groups, values),) = in_one_loop(many())

    assert [status for status, _, _ in answers] == [200] * 25 and recorder.paths == []
    assert sum(int(headers["x-ingest-accepted"]) for _, headers, _ in answers) == 21
    assert sum(int(headers["x-ingest-duplicates"]) for _, headers, _ in answers) == 4
    assert values == 25 and groups < values  # requests shared their transactions
    assert value_of(meter) == Decimal(20 + 10)


def test_a_bad_ingest_body_is_the_views_400_on_the_event_loop(setup):
    app, recorder, _, key = setup

    status, _, body = call(app, "/ingest", b'{"customerId": "cus_1"}', key)

    assert (status, body["code"], recorder.paths) == (400, "VALIDATION_ERROR", [])


def test_report_usage_is_queued_then_duplicate_then_409_on_the_event_loop(setup):
    app, recorder, meter, key = setup
    headers = {**key, "idempotency-key": "k1"}

    first = call(app, "/billing/meters/usage", report_body(3), headers)
    replay = call(app, "/billing/meters/usage", report_body(3), headers)
    reused = call(app, "/billing/meters/usage", report_body(4), headers)

    assert first[0] == 202 and first[2] == {"status": "queued", "requestId": first[2]["requestId"]}
    assert replay[0] == 200 and replay[2] == {"status": "duplicate", "idempotencyKey": "k1"}
    assert reused[0] == 409 and reused[2]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert recorder.paths == []
    record = UsageRecord.objects.get(idempotency_key="report:k1")
    assert (record.source, record.source_ref, record.value) == ("report", first[2]["requestId"], Decimal(3))
    assert value_of(meter) == Decimal(3)


def test_twenty_concurrent_reports_with_one_key_count_once_and_another_body_is_409(setup):
    app, _, meter, key = setup
    headers = {**key, "idempotency-key": "same"}

    answers = in_one_loop(
        *(request(app, "/billing/meters/usage", report_body(3), headers) for _ in range(20)),
        request(app, "/billing/meters/usage", report_body(9), headers),
    )

    statuses = [status for status, _, _ in answers]
    assert sorted(statuses[:20]) == [200] * 19 + [202] and statuses[20] == 409
    assert value_of(meter) == Decimal(3)
    assert UsageRecord.objects.filter(idempotency_key="report:same").count() == 1


def test_reports_grouped_together_keep_their_own_request_ids(setup, account):
    app, _, _, key = setup
    # cus_404 has no meter (the type does not create meters): its report goes to data correction.
    answers = in_one_loop(
        request(app, "/billing/meters/usage", report_body(1), {**key, "idempotency-key": "a"}),
        request(app, "/billing/meters/usage", report_body(2), {**key, "idempotency-key": "b"}),
        request(
            app, "/billing/meters/usage", report_body(5, customer="cus_404"), {**key, "idempotency-key": "c"}
        ),
    )

    assert [status for status, _, _ in answers] == [202, 202, 202]
    ids = [body["requestId"] for _, _, body in answers]
    assert len(set(ids)) == 3
    assert dict(
        UsageRecord.objects.filter(idempotency_key__in=["report:a", "report:b"]).values_list(
            "idempotency_key", "source_ref"
        )
    ) == {"report:a": ids[0], "report:b": ids[1]}
    correction = DataCorrection.objects.get(account=account)
    assert (correction.source_ref, correction.reason) == (ids[2], "NO_MATCHING_METER")


@pytest.mark.parametrize("case", ["no key", "meter not cached", "api key not cached"])
def test_what_memory_cannot_settle_goes_to_the_report_view(setup, case):
    app, recorder, _, key = setup
    headers = {**key, "idempotency-key": "h1"}
    if case == "no key":
        headers.pop("idempotency-key")
    elif case == "meter not cached":
        billing._meter_cache.clear()
    else:
        headers["x-api-key"] = "not-a-key"

    status, _, body = call(app, "/billing/meters/usage", report_body(1), headers)

    assert recorder.paths == ["/billing/meters/usage"]
    expected = {
        "no key": (400, "IDEMPOTENCY_KEY_REQUIRED"),
        "meter not cached": (202, None),
        "api key not cached": (401, "INVALID_API_KEY"),
    }[case]
    assert (status, body.get("code")) == expected


def test_requests_missing_what_one_hand_over_looks_up_wait_for_it_and_are_served_on_the_loop(setup):
    """An expired entry sent every request holding its key at that moment to the synchronous tier's
    one thread (16 at a time, 35-215 ms each): now one request per missing thing goes there."""
    app, recorder, meter, key = setup
    principal_cache.clear()  # the API key and the report's meter have expired in this process
    billing._meter_cache.clear()

    async def cold():
        return await asyncio.gather(
            *(request(app, "/ingest", json.dumps(event(f"i{n}")).encode(), key) for n in range(10)),
            *(
                request(app, "/billing/meters/usage", report_body(1), {**key, "idempotency-key": f"r{n}"})
                for n in range(10)
            ),
        )

    (answers,) = in_one_loop(cold())

    assert [status for status, _, _ in answers] == [200] * 10 + [202] * 10
    # The API key once (by the first request), the report's meter once: the rest on the loop.
    assert sorted(recorder.paths) == ["/billing/meters/usage", "/ingest"]
    assert value_of(meter) == Decimal(10 + 10)


def test_the_rate_limit_holds_on_the_event_loop(setup, settings):
    app, recorder, _, key = setup
    settings.RATE_LIMIT_ENABLED = True
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": (1, 60, 1)}
    limiter.reset()

    first = call(app, "/ingest", json.dumps(event("r1")).encode(), key)[0]
    status, headers, body = call(app, "/ingest", json.dumps(event("r2")).encode(), key)

    assert (first, status, body["code"], recorder.paths) == (200, 429, "TOO_MANY_REQUESTS", [])
    assert int(headers["retry-after"]) >= 1


def test_a_request_that_breaks_its_batch_fails_alone(setup, monkeypatch):
    app, _, meter, key = setup
    real = ingest_asgi.usage_apply

    def fragile(**kwargs):
        if any(record.user_id == "boom" for record in kwargs["records"]):
            raise ValueError("boom")
        return real(**kwargs)

    monkeypatch.setattr(ingest_asgi, "usage_apply", fragile)
    answers = in_one_loop(
        *(request(app, "/ingest", json.dumps(event(f"f{n}", 1)).encode(), key) for n in range(4)),
        request(app, "/ingest", json.dumps(event("f-boom", 1, customer="boom")).encode(), key),
    )

    assert [status for status, _, _ in answers] == [200, 200, 200, 200, 500]
    assert answers[4][2]["code"] == "INTERNAL_ERROR"
    assert value_of(meter) == Decimal(4)


def test_the_database_down_is_503_with_retry_after_on_the_event_loop(setup, monkeypatch):
    app, recorder, _, key = setup

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("metering.compat.ingest_asgi.usage_apply", down)
    status, headers, body = call(app, "/ingest", json.dumps(event("d1")).encode(), key)

    assert (status, body["code"], recorder.paths) == (503, "SERVICE_UNAVAILABLE", [])
    assert "retry-after" in headers
