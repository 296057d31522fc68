"""Builders for metering tests: request bodies, and rows through ``tests.factories`` with these
tests' defaults."""

from __future__ import annotations

from typing import Any

from metering.models import Meter, MeterType
from tests import factories


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
    """The API tests' type: a capacity of 1000 and a warning threshold at 80 %."""
    return factories.make_meter_type(
        account,
        **{"capacity": 1000, "thresholds": [{"name": "warning", "capacityPercentage": 80}], **overrides},
    )


def make_meter(meter_type: MeterType, **overrides: Any) -> Meter:
    return factories.make_meter(
        meter_type,
        **{"meter_key": "a1f8797b-c827-4483-b6cf-6d3d3baa18a7", "user_id": "user0@example.com", **overrides},
    )


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    """The JSON error body with this status and code (and, if given, a detail for this field)."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code, body
    if field is not None:
        assert field in [detail["field"] for detail in body["details"]], body
    return body
