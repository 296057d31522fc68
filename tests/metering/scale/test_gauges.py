"""/metrics gauges registered by the apps' AppConfig.ready(): flush lag, webhook failures, run lag,
and the ledger's usage_records_total counter."""

import re
import socket
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import override_settings

from collection.models import CollectedBatch, ConsumerOffset
from metering.ledger import UsageInput, usage_apply
from notifications import services as notification_services
from notifications.models import EventType
from tests.console.conftest import make_meter, make_type

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


def sample(client, name: str) -> dict[str, float]:
    """``{labels text: value}`` of one metric in the /metrics answer."""
    with override_settings(METRICS_TOKEN="scrape-token"):  # /metrics is closed without one
        body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").content.decode()
    return {
        labels or "": float(value)
        for labels, value in re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", body, flags=re.MULTILINE)
    }


def test_flush_lag_is_the_age_of_the_oldest_due_period(client, account):
    with time_machine.travel(NOW, tick=False):
        calls = make_type(account, name="Calls")  # daily: the meter's period ends 11 January 00:00
        make_meter(calls, "ann")
        assert sample(client, "metering_flush_lag_seconds") == {"": 0.0}
    with time_machine.travel(datetime(2027, 1, 11, 0, 1, 30, tzinfo=UTC), tick=False):
        assert sample(client, "metering_flush_lag_seconds") == {"": 90.0}


def test_usage_records_total_counts_each_outcome_by_source(client, account):
    with time_machine.travel(NOW, tick=False):
        calls = make_type(account, name="Calls")
        make_meter(calls, "ann")
        before = sample(client, "usage_records_total")
        records = [
            UsageInput(user_id="ann", value=1, meter_type_id=calls.pk, idempotency_key=f"k{index}")
            for index in (1, 2, 2)
        ] + [UsageInput(user_id="ann", value="x", meter_type_id=calls.pk)]
        usage_apply(account_id=account.pk, records=records, source="report")
        after = sample(client, "usage_records_total")

    def grew(outcome: str) -> float:
        key = f'{{outcome="{outcome}",source="report"}}'
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert (grew("accepted"), grew("duplicate"), grew("correction")) == (2.0, 1.0, 1.0)


def test_webhook_failures_count_the_failed_deliveries(client, account, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    with socket.socket() as probe:  # a port nothing listens on: every attempt is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    notification_services.notification_endpoint_create(
        account=account, url=f"http://127.0.0.1:{port}/hook", event_types=list(EventType.values)
    )
    events = [
        notification_services.notification_publish(
            account_id=account.pk, event_type=EventType.THRESHOLD_CROSSED, payload={"n": index}
        )
        for index in range(3)
    ]
    assert sample(client, "webhook_deliveries_failed") == {"": 0.0}
    for event in events[:2]:
        notification_services.delivery_attempt(delivery_id=event.deliveries.get().pk)
    assert sample(client, "webhook_deliveries_failed") == {"": 2.0}


def test_run_lag_is_the_age_of_each_readers_oldest_unconsumed_batch(client, account):
    from collection.models import Collector

    collector = Collector.objects.create(account=account, name="gateway", status=Collector.Status.ACTIVE)
    batches = [
        CollectedBatch.objects.create(
            account=account,
            collector=collector,
            payload="[]",
            size_bytes=2,
            ingestion_id=f"00000000-0000-0000-0000-00000000000{index}",
            received_at=NOW - timedelta(minutes=10 - index),
        )
        for index in range(3)
    ]
    ConsumerOffset.objects.create(collector=collector, consumer="stream:a", last_sequence=batches[0].sequence)
    ConsumerOffset.objects.create(collector=collector, consumer="stream:b", last_sequence=batches[2].sequence)
    with time_machine.travel(NOW, tick=False):
        assert sample(client, "collection_run_lag_seconds") == {
            '{consumer="stream:a"}': 540.0,
            '{consumer="stream:b"}': 0.0,
        }
