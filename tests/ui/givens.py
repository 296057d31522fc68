"""What an account looks like after some use, built through the services.

Two things are written as rows instead, because the services that write them are built in other
branches and the console only reads what they leave: a meter's current value (the usage ledger)
and flushed periods (the flush).
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
from metering import services as metering_services
from metering.ledger import UsageInput, usage_apply
from metering.models import Meter, MeteredRecord, MeterType
from notifications import services as notification_services
from notifications.models import EventType
from parameters import services as parameter_services
from streams import services as stream_services

STREAM_EXAMPLES = Path(__file__).resolve().parent.parent / "streams" / "examples"
STOCKHOLM = ZoneInfo("Europe/Stockholm")
# Flushed daily usage of ann's "API calls" meter, oldest first, ending yesterday.
ANN_DAILY_CALLS = (120, 340, 280, 510, 460, 390, 620, 700, 655, 480)


def _ledger_record(meter: Meter, at: datetime, value: int | Decimal) -> None:
    """One usage record through the ledger (which the dashboard's usage charts read), at ``at``."""
    MeterType.objects.filter(pk=meter.meter_type_id, active_from__gt=at).update(active_from=at)
    result = usage_apply(account_id=meter.account_id, source="api", records=[UsageInput(
        user_id=meter.user_id, value=value, timestamp=at, meter_type_id=meter.meter_type_id, meter_key=meter.meter_key)])
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
            account_id=meter.account_id, meter=meter, source_meter_id=meter.pk, user_id=meter.user_id,
            meter_type_id=meter_type.pk, meter_type_name=meter_type.name, timezone=meter_type.timezone,
            meter_key=meter.meter_key, value=Decimal(value), unit=meter_type.unit, period_start=start,
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
        account=account, solution_id=solution.pk, actor={"type": "user", "id": "setup"},
        stream_config=json.loads((STREAM_EXAMPLES / "api-calls-metering.json").read_text()))


def given_failed_threshold_webhook(account: Account, meter: Meter) -> None:
    """A threshold notification, published as the metering side will when a meter crosses a
    threshold, delivered at once (eager tasks) to a port that refuses: with one attempt allowed
    (tests/ui/conftest.py), it fails."""
    notification_services.notification_endpoint_create(
        account=account, url=f"http://127.0.0.1:{closed_port()}/hooks/metering",
        event_types=[EventType.THRESHOLD_CROSSED], description="alerts")
    notification_services.notification_publish(
        account_id=account.pk, event_type=EventType.THRESHOLD_CROSSED,
        payload={"meterId": str(meter.pk), "threshold": {"name": "warning", "capacityPercentage": 80},
                 "value": float(meter.value)})


@dataclass(frozen=True)
class OperatorData:
    meter_type: MeterType
    near_meter: Meter


def given_operator_data(account: Account) -> OperatorData:
    """Meter types with meters and usage, a stream, a sensitive parameter, a failed threshold webhook."""
    calls = metering_services.meter_type_create(
        account_id=account.pk, name="API calls", unit="requests", aggregation="SUM", reset_cron="0 0 * * *",
        timezone="Europe/Stockholm", capacity=Decimal(1000),
        thresholds=[{"name": "warning", "capacityPercentage": 80}])
    storage = metering_services.meter_type_create(
        account_id=account.pk, name="Storage", unit="GB", aggregation="MAX", reset_cron="0 0 1 * *",
        timezone="Etc/UTC", capacity=Decimal(500))
    near = set_value(metering_services.meter_create(account_id=account.pk, meter_type_id=calls.pk,
                                                    meter_key="api-gateway", user_id="ann@acme.example"), 850)
    flush_daily_history(near, ANN_DAILY_CALLS)
    set_value(metering_services.meter_create(account_id=account.pk, meter_type_id=calls.pk,
                                             meter_key="api-gateway", user_id="bob@acme.example"), 310)
    set_value(metering_services.meter_create(account_id=account.pk, meter_type_id=storage.pk,
                                             meter_key="storage", user_id="ann@acme.example"), 120)
    given_stream(account)
    parameter_services.parameter_create(account=account, name="billing/api-key", type="sensitive",
                                        value="sk-live-acme-secret")
    given_failed_threshold_webhook(account, near)
    return OperatorData(meter_type=calls, near_meter=near)
