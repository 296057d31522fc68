"""The services behind the API and the admin: defaults, races, and what they never overwrite."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from metering import services
from metering.exceptions import MeterTypeApiNameExists, MeterTypeNameExists
from metering.models import Meter, MeterType
from tests.metering.factories import make_meter, make_meter_type

pytestmark = pytest.mark.django_db


def test_a_duplicate_name_that_slips_past_the_check_is_still_a_409(account, monkeypatch):
    make_meter_type(account, name="API calls")
    real_check = services._check_meter_type_unique
    calls = []

    def racing_check(meter_type):
        # The first check runs before a concurrent request commits the same name.
        calls.append(meter_type.name)
        if len(calls) > 1:
            real_check(meter_type)

    monkeypatch.setattr(services, "_check_meter_type_unique", racing_check)
    with pytest.raises(MeterTypeNameExists):
        make_meter_type(account, name="API calls")
    assert calls == ["API calls", "API calls"]
    assert MeterType.objects.filter(account=account).count() == 1


def test_explicit_api_name_conflicts_are_409(account):
    make_meter_type(account, name="One", api_name="calls")
    with pytest.raises(MeterTypeApiNameExists):
        make_meter_type(account, name="Two", api_name="calls")


def test_an_empty_api_name_on_update_is_made_again_from_the_name(account):
    meter_type = make_meter_type(account, name="API calls")
    updated = services.meter_type_update(meter_type=meter_type, data={"name": "Storage used", "api_name": ""})
    assert updated.api_name == "storage-used"


def test_a_name_without_ascii_letters_gets_a_generic_api_name(account):
    assert make_meter_type(account, name="()").api_name == "meter-type"
    assert make_meter_type(account, name="(.)").api_name == "meter-type-2"


def test_cron_whitespace_is_stored_normalised(account):
    assert make_meter_type(account, reset_cron=" 0  0 1 * * ").reset_cron == "0 0 1 * *"


def test_updating_a_meter_never_overwrites_usage_counted_meanwhile(account):
    meter = make_meter(make_meter_type(account))
    # The usage ledger adds to the meter after the caller loaded it.
    Meter.objects.filter(pk=meter.pk).update(value=Decimal("41.5"), record_count=3)

    services.meter_update(meter=meter, data={"custom_fields": {"plan": "gold"}})

    fresh = Meter.objects.get(pk=meter.pk)
    assert (fresh.value, fresh.record_count, fresh.custom_fields) == (Decimal("41.5"), 3, {"plan": "gold"})


def test_a_new_schedule_applies_from_the_next_period(account):
    with time_machine.travel(datetime(2027, 1, 10, 12, tzinfo=UTC), tick=False):
        meter_type = make_meter_type(account, reset_cron="0 0 1 * *")
        meter = make_meter(meter_type)
        services.meter_type_update(
            meter_type=meter_type, data={"reset_cron": "0 0 * * *", "timezone": "America/New_York"}
        )
    meter.refresh_from_db()
    assert meter.period_end == datetime(2027, 2, 1, tzinfo=UTC)
    # The period after it follows the new schedule from that end.
    from metering.periods import next_period_end

    meter_type.refresh_from_db()
    assert next_period_end(meter_type.reset_cron, meter_type.timezone, meter.period_end) == datetime(
        2027, 2, 1, 5, tzinfo=UTC
    )


def test_services_refuse_fields_they_do_not_update(account):
    meter_type = make_meter_type(account)
    with pytest.raises(TypeError):
        services.meter_type_update(meter_type=meter_type, data={"account_id": account.pk})
    with pytest.raises(TypeError):
        services.meter_update(meter=make_meter(meter_type), data={"value": 1})


def test_deleting_a_meter_that_is_already_gone_counts_zero(account):
    meter = make_meter(make_meter_type(account))
    assert services.meter_delete(meter=meter) == 1
    assert services.meter_delete(meter=meter) == 0


@pytest.mark.parametrize(
    "model_field,api_field",
    [
        ("external_ref", "externalRef"),
        ("reset_cron", "resetSchedule.cron"),
        ("aggregation", "aggregation.type"),
        ("active_from", "activeFrom"),
        ("meter_type", "meterTypeId"),
        ("name", "name"),
    ],
)
def test_error_field_names_map_both_ways(model_field, api_field):
    assert services.api_field_name(model_field) == api_field
    assert services.model_field_name(api_field) == model_field
