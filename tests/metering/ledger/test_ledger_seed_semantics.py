"""Seed 000's reading of a usage record: INCREMENT counts occurrences (a record needs no value), and
a time without an offset is UTC."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from metering.models import DataCorrection, UsageRecord
from tests.metering.ledger.conftest import apply, make_meter, make_type, usage, value_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("missing", [None, "", "  "])
def test_a_record_without_a_value_counts_one_on_an_increment_meter(account, frozen, missing):
    counter = make_type(account, aggregation="INCREMENT")
    meter = make_meter(counter)

    result = apply(account, [usage(counter, value=missing, key="a"), usage(counter, value=7, key="b")])

    assert (result.accepted, result.corrections) == (2, 0)
    assert value_of(meter) == Decimal(2)
    assert sorted(UsageRecord.objects.values_list("value", flat=True)) == [Decimal(1), Decimal(7)]


@pytest.mark.parametrize("aggregation", ["SUM", "MAX", "MIN"])
def test_a_record_without_a_value_is_refused_by_other_aggregations(account, frozen, aggregation):
    meter_type = make_type(account, aggregation=aggregation)
    meter = make_meter(meter_type)

    result = apply(account, [usage(meter_type, value=None)])

    assert (result.accepted, result.corrections) == (0, 1)
    assert DataCorrection.objects.get().reason == "MISSING_VALUE"
    assert not UsageRecord.objects.exists()
    meter.refresh_from_db()
    assert meter.record_count == 0


def test_a_time_without_an_offset_is_utc(account, frozen):
    meter_type = make_type(account)
    make_meter(meter_type)

    result = apply(account, [usage(meter_type, at="2027-01-10T10:00:00")])

    assert result.accepted == 1
    assert UsageRecord.objects.get().timestamp == datetime(2027, 1, 10, 10, 0, tzinfo=UTC)


def test_a_meter_made_on_first_usage_keeps_the_unit_and_timezone_its_type_had(account, frozen):
    from metering import services
    from metering.models import Meter

    meter_type = make_type(account, unit="requests", timezone="Etc/UTC", auto_create_meters=True)
    apply(account, [usage(meter_type, user="alice")])
    services.meter_type_update(meter_type=meter_type, data={"unit": "calls", "timezone": "Europe/Stockholm"})
    apply(account, [usage(meter_type, user="bob")])

    kept = Meter.objects.get(meter_type=meter_type, user_id="alice")
    made_after = Meter.objects.get(meter_type=meter_type, user_id="bob")
    assert (kept.unit, kept.timezone) == ("requests", "Etc/UTC")
    assert (made_after.unit, made_after.timezone) == ("calls", "Europe/Stockholm")
