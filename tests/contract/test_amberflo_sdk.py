"""The published Amberflo SDK (amberflo-metering-python 3.3.1) against a live server, unchanged but
for its root URLs: definitions through its session, events through its ingest client and payload
builder (gzip bodies to ``/ingest/``, the threaded producer too), usage through its query builders
(nested ``timeRange``, ``take``, ``/usage/`` and ``/usage/batch``). Issue 21."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accounts import services as account_services
from metering.models import UsageRecord
from tests.support.amberflo_sdk import sdk

SdkApiError = sdk.exceptions.ApiError
ApiSession, IngestSession = sdk.session.ApiSession, sdk.session.IngestSession
IngestApiClient, create_ingest_client = sdk.ingest.IngestApiClient, sdk.ingest.create_ingest_client
create_ingest_payload = sdk.ingest.create_ingest_payload
AggregationType, TimeGroupingInterval = sdk.usage.AggregationType, sdk.usage.TimeGroupingInterval
Take, TimeRange = sdk.usage.Take, sdk.usage.TimeRange
UsageApiClient, create_usage_query = sdk.usage.UsageApiClient, sdk.usage.create_usage_query

pytestmark = pytest.mark.django_db(transaction=True)

# Three whole UTC days ending at today's midnight: inside the acceptance window, in the past.
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY_1 = TODAY - timedelta(days=3)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.fixture
def api_key(live_server, account, monkeypatch) -> str:
    """An account API key, and the SDK's sessions pointed at the live server."""
    monkeypatch.setattr(ApiSession, "root_url", live_server.url)
    monkeypatch.setattr(IngestSession, "root_url", live_server.url)
    _, raw = account_services.api_key_create(account=account, name="sdk", scopes=["all"])
    ApiSession(raw).post(
        "/meter-definition",
        {
            "meterApiName": "api-calls",
            "displayName": "API Calls",
            "type": "SUM_OF_ALL_USAGE",
            "dimensions": [],
        },
    )
    return raw


def events() -> list[dict]:
    """alice 5 + 7 on day 1 and 1 on day 2, bob 2 on day 1 and 10 on day 3, with a region each."""
    plan = [
        ("alice", 5, DAY_1 + timedelta(hours=1), "eu"),
        ("alice", 7, DAY_1 + timedelta(hours=1, minutes=30), "us"),
        ("bob", 2, DAY_1 + timedelta(hours=5), "eu"),
        ("alice", 1, DAY_1 + timedelta(days=1, hours=2), "eu"),
        ("bob", 10, DAY_1 + timedelta(days=2, hours=3), "us"),
    ]
    return [
        create_ingest_payload(
            meter_api_name="api-calls",
            meter_value=value,
            meter_time_in_millis=millis(moment),
            customer_id=customer,
            dimensions={"region": region},
            unique_id=f"evt-{number}",
        )
        for number, (customer, value, moment, region) in enumerate(plan)
    ]


def daily_query(**kwargs) -> dict:
    return create_usage_query(
        AggregationType.SUM,
        "api-calls",
        TimeGroupingInterval.DAY,
        TimeRange(seconds(DAY_1), seconds(TODAY)),
        **kwargs,
    )


def day_records(*values: float) -> list[dict]:
    return [{str(seconds(DAY_1 + timedelta(days=n))): value} for n, value in enumerate(values)]


def test_the_published_sdk_is_the_one_loaded():
    assert sdk.version == "3.3.1"


def test_the_sdk_ingests_gzip_and_a_replay_is_counted_once(api_key):
    client = IngestApiClient(api_key)

    assert client.send(events()) == '"OK"'
    assert client.send(events()) == '"OK"'  # same uniqueIds: deduplicated
    assert client.send(events()[0]) == '"OK"'  # one event, not a list

    assert UsageRecord.objects.count() == 5
    report = UsageApiClient(api_key).get(daily_query())
    assert report == {
        "clientMeters": {"api-calls": [{"groupInfo": {}, "records": day_records(14.0, 1.0, 10.0)}]}
    }


def test_the_threaded_producer_delivers_each_event_once(api_key):
    producer = create_ingest_client(api_key=api_key, send_interval_in_secs=0.05)
    for payload in events() + events():
        producer.send(payload)
    producer.shutdown()  # flushes the queue, then stops its threads

    report = UsageApiClient(api_key).get(daily_query(group_by=["customerId"]))
    assert report == {
        "clientMeters": {
            "api-calls": [
                {"groupInfo": {"customerId": "alice"}, "records": day_records(12.0, 1.0, 0)},
                {"groupInfo": {"customerId": "bob"}, "records": day_records(2.0, 0, 10.0)},
            ]
        }
    }


def test_the_sdk_queries_with_filter_take_and_a_batch(api_key):
    IngestApiClient(api_key).send(events())
    usage = UsageApiClient(api_key)

    eu = usage.get(daily_query(group_by=["customerId"], usage_filter={"region": ["eu"]}))
    assert eu["clientMeters"]["api-calls"] == [
        {"groupInfo": {"customerId": "alice"}, "records": day_records(5.0, 1.0, 0)},
        {"groupInfo": {"customerId": "bob"}, "records": day_records(2.0, 0, 0)},
    ]
    top = usage.get(daily_query(group_by=["customerId"], take=Take(1)))
    assert top["clientMeters"]["api-calls"] == [
        {"groupInfo": {"customerId": "alice"}, "records": day_records(12.0, 1.0, 0)}
    ]
    bottom = usage.get(daily_query(group_by=["customerId"], take=Take(1, is_ascending=True)))
    assert bottom["clientMeters"]["api-calls"] == [
        {"groupInfo": {"customerId": "bob"}, "records": day_records(2.0, 0, 10.0)}
    ]
    hourly = create_usage_query(
        AggregationType.MAX,
        "api-calls",
        TimeGroupingInterval.MONTH,
        TimeRange(seconds(DAY_1)),  # no end: up to now
    )
    reports = usage.get([daily_query(), hourly])
    assert reports[0] == {
        "clientMeters": {"api-calls": [{"groupInfo": {}, "records": day_records(14.0, 1.0, 10.0)}]}
    }
    assert (
        sum(
            value
            for record in reports[1]["clientMeters"]["api-calls"][0]["records"]
            for value in record.values()
        )
        >= 10.0
    )


def test_the_sdk_sees_the_apis_refusals_as_its_errors(api_key):
    with pytest.raises(SdkApiError) as refused:
        UsageApiClient(api_key).get(
            create_usage_query(
                AggregationType.MIN,
                "api-calls",
                TimeGroupingInterval.DAY,
                TimeRange(seconds(DAY_1), seconds(TODAY)),
            )
        )
    assert refused.value.status_code == 400
    with pytest.raises(SdkApiError) as unknown:
        IngestApiClient("mk_unknown").send(events())
    assert unknown.value.status_code == 401
