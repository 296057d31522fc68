"""Builders for metering tests: request bodies and rows made through the services."""

from __future__ import annotations

from typing import Any

from metering import services
from metering.models import Meter, MeterType


def meter_type_body(**overrides: Any) -> dict[str, Any]:
    """A valid create body (seed 000's sample without the dates, which must not be in the past)."""
    body = {
        "aggregation": {"type": "SUM"},
        "capacity": 1000,
        "category": "API Counts",
        "description": "Meter definition to count the number of API requests per customer",
        "externalRef": "878752b4-4ddf",
        "name": "Usage based API counter",
        "resetSchedule": {"cron": "0 0 1 * *"},
        "thresholds": [{"name": "warning", "capacityPercentage": 80}, {"value": 950}],
        "timezone": "Etc/UTC",
        "unit": "requests",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


def make_meter_type(account, **overrides: Any) -> MeterType:
    values = {
        "name": "API calls",
        "unit": "requests",
        "aggregation": "SUM",
        "reset_cron": "0 0 1 * *",
        "timezone": "Etc/UTC",
        "capacity": 1000,
        "thresholds": [{"name": "warning", "capacityPercentage": 80}],
    }
    values.update(overrides)
    return services.meter_type_create(account_id=account.pk, **values)


def make_meter(meter_type: MeterType, **overrides: Any) -> Meter:
    values = {"meter_key": "a1f8797b-c827-4483-b6cf-6d3d3baa18a7", "user_id": "user0@example.com"}
    values.update(overrides)
    return services.meter_create(account_id=meter_type.account_id, meter_type_id=meter_type.pk, **values)


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    """The JSON error body with this status and code (and, if given, a detail for this field)."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code, body
    if field is not None:
        assert field in [detail["field"] for detail in body["details"]], body
    return body
