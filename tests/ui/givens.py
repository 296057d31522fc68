"""What an account looks like after some use, built through the services.

Two things are written as rows instead: a meter's current value is set outright after its ledger
record (so a screenshot shows a round figure), and flushed periods are written as the flush
leaves them (days of history without waiting for resets).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from django.utils.timezone import now as utc_now

from accounts.models import Account
from collection import services as collection_services
from collection.models import Collector
from metering import services as metering_services
from metering.ledger import UsageInput, usage_apply
from metering.models import Meter, MeteredRecord, MeterType, ThresholdEvent
from notifications import services as notification_services
from notifications.models import EventType
from parameters import services as parameter_services
from streams import services as stream_services
from streams.engine import services as engine_services
from streams.models import Stream

STREAM_EXAMPLES = Path(__file__).resolve().parent.parent / "streams" / "examples"
STOCKHOLM = ZoneInfo("Europe/Stockholm")
# Flushed daily usage of ann's "API calls" meter, oldest first, ending yesterday.
ANN_DAILY_CALLS = (120, 340, 280, 510, 460, 390, 620, 700, 655, 480)


def _ledger_record(meter: Meter, at: datetime, value: int | Decimal) -> None:
    """One usage record through the ledger (which the dashboard's usage charts read), at ``at``."""
    MeterType.objects.filter(pk=meter.meter_type_id, active_from__gt=at).update(active_from=at)
    result = usage_apply(
        account_id=meter.account_id,
        source="api",
        records=[
            UsageInput(
                user_id=meter.user_id,
                value=value,
                timestamp=at,
                meter_type_id=meter.meter_type_id,
                meter_key=meter.meter_key,
            )
        ],
    )
    assert result.accepted == 1, result


def set_value(meter: Meter, value: int | Decimal) -> Meter:
    """What the usage ledger leaves on a meter: a record of ``value`` now, and the meter's value."""
    _ledger_record(meter, utc_now(), value)
    Meter.objects.filter(pk=meter.pk).update(value=Decimal(value), record_count=int(value))
    meter.refresh_from_db()
    return meter


def flush_daily_history(meter: Meter, values: tuple[int, ...]) -> None:
    """Daily periods (local midnights in Stockholm) ending at today's start, as the flush writes them,
    and each day's usage as one ledger record at its local noon."""
    meter_type = meter.meter_type
    today = utc_now().astimezone(STOCKHOLM).replace(hour=0, minute=0, second=0, microsecond=0)
    for days_ago, value in zip(range(len(values), 0, -1), values, strict=True):
        # Aware arithmetic on one zone is wall-clock arithmetic: local midnights, across DST too.
        start, end = today - timedelta(days=days_ago), today - timedelta(days=days_ago - 1)
        MeteredRecord.objects.create(
            account_id=meter.account_id,
            meter=meter,
            source_meter_id=meter.pk,
            user_id=meter.user_id,
            meter_type_id=meter_type.pk,
            meter_type_name=meter_type.name,
            timezone=meter_type.timezone,
            meter_key=meter.meter_key,
            value=Decimal(value),
            unit=meter_type.unit,
            period_start=start,
            period_end=end,
        )
        _ledger_record(meter, start + timedelta(hours=12), value)


def closed_port() -> int:
    """A local port nothing listens on: a webhook sent there fails at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def given_stream(account: Account) -> None:
    solution = stream_services.solution_create(account=account, name="Production")
    stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor={"type": "user", "id": "setup"},
        stream_config=json.loads((STREAM_EXAMPLES / "api-calls-metering.json").read_text()),
    )


def metering_stream_config(collector: Collector, **overrides) -> dict:
    """The API-calls example reading ``collector``, without its HTTP forwarder (the machine has no
    internet: its deliveries would only wait in the outbox, which these tests do not look at)."""
    config = json.loads((STREAM_EXAMPLES / "api-calls-metering.json").read_text())
    config["nodes"] = [node for node in config["nodes"] if node["type"] != "httpForwarder"]
    config["edges"] = [edge for edge in config["edges"] if edge["target"] != "billing"]
    config["nodes"][0]["config"]["collectorId"] = str(collector.pk)
    return config | overrides


def given_collector(account: Account, name: str = "api-gateway") -> Collector:
    collector = collection_services.collector_create(account_id=account.pk, name=name)
    collection_services.collector_provision(collector_id=collector.pk)
    return collector


def given_intake(account: Account, collector: Collector, *, minutes: int = 14) -> None:
    """A batch of 20-70 API-call events every minute of the last ``minutes``, as the gateway sends them."""
    now = utc_now()
    for minute in range(minutes, -1, -1):
        events = [
            {
                "requestId": f"m{minute}-{n}",
                "status": 200,
                "internal": False,
                "path": "/v1/orders",
                "customer": {"id": "ann@acme.example"},
            }
            for n in range(20 + (minute * 37) % 50)
        ]
        collection_services.collected_batch_append(
            account_id=account.pk,
            collector_id=collector.pk,
            payload=json.dumps(events),
            received_at=now - timedelta(minutes=minute, seconds=5),
        )


def given_stream_runs_with_errors(account: Account) -> Stream:
    """A batch stream whose stored configuration names a node type this version no longer has: its
    runs fail; and records that are not JSON objects, rejected by its input node."""
    solution = stream_services.solution_create(account=account, name="Exports")
    stream = stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor={"type": "user", "id": "setup"},
        stream_config={
            "name": "Usage export",
            "processingType": "batch",
            "nodes": [
                {
                    "id": "in",
                    "name": "Usage in",
                    "type": "onlineCollector",
                    "config": {"collectorId": "8a76066d-ff29-417c-a18e-abde22e44310"},
                },
                {
                    "id": "export",
                    "name": "Export",
                    "type": "httpForwarder",
                    "config": {"url": "{{param:export/url}}"},
                },
            ],
            "edges": [{"source": "in", "target": "export"}],
        },
    ).stream
    Stream.objects.filter(pk=stream.pk).update(
        nodes=[*stream.nodes[:1], {**stream.nodes[1], "type": "retiredExport"}]
    )
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"usage": 1}])
    return stream


def given_data_corrections(account: Account, meter_type: MeterType) -> None:
    """Records the ledger refused: one without a customer, two for customers without a meter."""
    result = usage_apply(
        account_id=account.pk,
        source="api",
        records=[
            UsageInput(user_id=None, value=3, meter_type_id=meter_type.pk, idempotency_key="u-1"),
            UsageInput(
                user_id="dora@acme.example", value=5, meter_type_id=meter_type.pk, idempotency_key="u-2"
            ),
            UsageInput(
                user_id="ed@acme.example", value=8, meter_type_id=meter_type.pk, idempotency_key="u-3"
            ),
        ],
    )
    assert result.corrections == 3, result


def given_failed_threshold_webhook(account: Account, meter: Meter) -> None:
    """A threshold notification, published as the metering side will when a meter crosses a
    threshold, delivered at once (eager tasks) to a port that refuses: with one attempt allowed
    (tests/ui/conftest.py), it fails."""
    notification_services.notification_endpoint_create(
        account=account,
        url=f"http://127.0.0.1:{closed_port()}/hooks/metering",
        event_types=[EventType.THRESHOLD_CROSSED],
        description="alerts",
    )
    # The crossing as the ledger records it (the meter's value was set outright, see set_value).
    # (The ledger may have recorded it already, when usage reached the meter: one per period.)
    crossing, _ = ThresholdEvent.objects.get_or_create(
        meter=meter,
        threshold_index=0,
        period_start=meter.period_start,
        defaults={
            "account_id": account.pk,
            "name": "warning",
            "threshold_value": meter.capacity * Decimal("0.8"),
            "value": meter.value,
        },
    )
    notification_services.notification_publish(
        account_id=account.pk,
        event_type=EventType.THRESHOLD_CROSSED,
        payload={
            "thresholdEventId": str(crossing.pk),
            "meterId": str(meter.pk),
            "threshold": {"name": "warning", "capacityPercentage": 80},
            "value": float(meter.value),
        },
    )


@dataclass(frozen=True)
class OperatorData:
    meter_type: MeterType
    near_meter: Meter
    collector: Collector
    failing_stream: Stream


def given_operator_data(account: Account) -> OperatorData:
    """Meter types with meters and usage, a stream, a sensitive parameter, a failed threshold webhook,
    a collector with a quarter of an hour of intake, failed stream runs and refused usage records."""
    calls = metering_services.meter_type_create(
        account_id=account.pk,
        name="API calls",
        unit="requests",
        aggregation="SUM",
        reset_cron="0 0 * * *",
        timezone="Europe/Stockholm",
        capacity=Decimal(1000),
        thresholds=[{"name": "warning", "capacityPercentage": 80}],
    )
    storage = metering_services.meter_type_create(
        account_id=account.pk,
        name="Storage",
        unit="GB",
        aggregation="MAX",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        capacity=Decimal(500),
    )
    near = set_value(
        metering_services.meter_create(
            account_id=account.pk, meter_type_id=calls.pk, meter_key="api-gateway", user_id="ann@acme.example"
        ),
        850,
    )
    flush_daily_history(near, ANN_DAILY_CALLS)
    set_value(
        metering_services.meter_create(
            account_id=account.pk, meter_type_id=calls.pk, meter_key="api-gateway", user_id="bob@acme.example"
        ),
        310,
    )
    set_value(
        metering_services.meter_create(
            account_id=account.pk, meter_type_id=storage.pk, meter_key="storage", user_id="ann@acme.example"
        ),
        120,
    )
    given_stream(account)
    parameter_services.parameter_create(
        account=account, name="billing/api-key", type="sensitive", value="sk-live-acme-secret"
    )
    given_failed_threshold_webhook(account, near)
    gateway = given_collector(account)
    given_intake(account, gateway)
    failing = given_stream_runs_with_errors(account)
    given_data_corrections(account, calls)
    return OperatorData(meter_type=calls, near_meter=near, collector=gateway, failing_stream=failing)
