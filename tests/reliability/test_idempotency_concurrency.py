"""Idempotency under concurrency (issue 12, item 5), against a live threaded server.

50 requests with one Idempotency-Key at once have exactly one effect; every other answer is the
duplicate/replay answer or 409 IDEMPOTENCY_KEY_IN_USE (never a 5xx, never a second effect). The
same key with another body is 409 IDEMPOTENCY_KEY_REUSED, and keys belong to one account: the same
key in two accounts has two effects.
"""

from __future__ import annotations

import http.client
import json
import threading
from decimal import Decimal
from urllib.parse import urlparse

import pytest

from collection.models import CollectedBatch
from metering import services as metering_services
from metering.models import Meter, UsageRecord
from tests.collection.conftest import data_url, make_collector
from tests.conftest import issue_token, make_access

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENT = 50
INGEST = ("online-collection:ingest:collectors",)
REPORT_URL = "/billing/meters/usage"


def connect(base_url: str) -> http.client.HTTPConnection:
    parsed = urlparse(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=20)
    connection.connect()
    return connection


def post(
    base_url: str,
    path: str,
    token: str,
    body: dict,
    key: str,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, dict]:
    connection = connection or connect(base_url)
    try:
        connection.request(
            "POST",
            path,
            json.dumps(body),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            },
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def all_at_once(base_url: str, path: str, token: str, body: dict, key: str) -> list[tuple[int, dict]]:
    """CONCURRENT threads released together by a barrier, each sending the same request on a
    connection opened beforehand (one at a time: the live server's listen backlog is short)."""
    connections = [connect(base_url) for _ in range(CONCURRENT)]
    barrier = threading.Barrier(CONCURRENT)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def one(connection: http.client.HTTPConnection) -> None:
        barrier.wait(timeout=10)
        answer = post(base_url, path, token, body, key, connection)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one, args=(connection,)) for connection in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return answers


def token_for(account, scopes: tuple[str, ...], name: str) -> str:
    access, secret = make_access(account, name=name, scopes=scopes)
    return issue_token(access, secret)


def meter_of(account, api_name: str = "api_calls", user_id: str = "cus_1") -> Meter:
    meter_type = metering_services.meter_type_create(
        account_id=account.pk,
        name="API calls",
        unit="requests",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        api_name=api_name,
    )
    return metering_services.meter_create(
        account_id=account.pk, meter_type_id=meter_type.pk, meter_key="default", user_id=user_id
    )


def test_fifty_concurrent_reports_with_one_key_count_once(live_server, account):
    meter = meter_of(account)
    token = token_for(account, ("meter-report",), "billing")
    body = {"value": 3, "customerId": "cus_1", "meterName": "api_calls"}

    answers = all_at_once(live_server.url, REPORT_URL, token, body, "order-42")

    statuses = sorted(status for status, _ in answers)
    assert len(answers) == CONCURRENT
    assert statuses.count(202) == 1, statuses
    for status, answer in answers:
        if status == 200:
            assert answer == {"status": "duplicate", "idempotencyKey": "order-42"}
        elif status == 409:
            assert answer["code"] == "IDEMPOTENCY_KEY_IN_USE", answer
        else:
            assert status == 202, (status, answer)
    assert UsageRecord.objects.filter(account_id=account.pk).count() == 1
    meter.refresh_from_db()
    assert meter.value == Decimal(3)
    # After the race, the key answers the duplicate every time.
    assert post(live_server.url, REPORT_URL, token, body, "order-42") == (
        200,
        {"status": "duplicate", "idempotencyKey": "order-42"},
    )


def test_fifty_concurrent_sends_with_one_key_store_one_batch(live_server, account):
    collector = make_collector(account)
    token = token_for(account, INGEST, "collector")
    body = {"data": {"n": 1}}

    answers = all_at_once(live_server.url, data_url(collector), token, body, "batch-7")

    batches = list(CollectedBatch.objects.filter(account_id=account.pk))
    assert len(batches) == 1
    first_id = str(batches[0].ingestion_id)
    for status, answer in answers:
        if status == 200:
            assert answer == {"ingestionId": first_id}
        else:
            assert (status, answer["code"]) == (409, "IDEMPOTENCY_KEY_IN_USE"), (status, answer)
    assert sum(1 for status, _ in answers if status == 200) >= 1


def test_the_same_key_with_another_body_is_409_reused_and_changes_nothing(live_server, account):
    meter = meter_of(account)
    token = token_for(account, ("meter-report",), "billing")
    assert (
        post(
            live_server.url,
            REPORT_URL,
            token,
            {"value": 3, "customerId": "cus_1", "meterName": "api_calls"},
            "k",
        )[0]
        == 202
    )

    status, answer = post(
        live_server.url, REPORT_URL, token, {"value": 4, "customerId": "cus_1", "meterName": "api_calls"}, "k"
    )

    assert (status, answer["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    meter.refresh_from_db()
    assert meter.value == Decimal(3)
    assert UsageRecord.objects.count() == 1

    collector = make_collector(account)
    ingest_token = token_for(account, INGEST, "collector")
    assert post(live_server.url, data_url(collector), ingest_token, {"data": "a"}, "k")[0] == 200
    status, answer = post(live_server.url, data_url(collector), ingest_token, {"data": "b"}, "k")
    assert (status, answer["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert CollectedBatch.objects.count() == 1


def test_keys_are_per_account_the_same_key_in_two_accounts_counts_twice(live_server, account, other_account):
    meters = [meter_of(account), meter_of(other_account)]
    tokens = [
        token_for(account, ("meter-report",), "billing"),
        token_for(other_account, ("meter-report",), "billing"),
    ]
    body = {"value": 5, "customerId": "cus_1", "meterName": "api_calls"}

    assert [post(live_server.url, REPORT_URL, token, body, "shared")[0] for token in tokens] == [202, 202]

    for meter in meters:
        meter.refresh_from_db()
        assert meter.value == Decimal(5)
    assert UsageRecord.objects.filter(account_id=account.pk).count() == 1
    assert UsageRecord.objects.filter(account_id=other_account.pk).count() == 1

    collectors = [make_collector(account), make_collector(other_account)]
    ingest_tokens = [token_for(account, INGEST, "c"), token_for(other_account, INGEST, "c")]
    answers = [
        post(live_server.url, data_url(c), t, {"data": "x"}, "shared")
        for c, t in zip(collectors, ingest_tokens, strict=True)
    ]
    assert [status for status, _ in answers] == [200, 200]
    assert answers[0][1]["ingestionId"] != answers[1][1]["ingestionId"]
    assert CollectedBatch.objects.filter(account_id=account.pk).count() == 1
    assert CollectedBatch.objects.filter(account_id=other_account.pk).count() == 1
