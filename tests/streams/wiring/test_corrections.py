"""Reprocessing a record a Meter processor sent to data correction: it goes through the meter
node again — all its guiding rules, every meter type of the matched category, its groupBy and
carry fields — as the stream's current configuration has it, and counts once per meter type."""

from __future__ import annotations

import datetime

import pytest
import time_machine

from collection.models import Collector
from metering.corrections import data_correction_reprocess, data_correction_update, data_corrections_reprocess
from metering.models import DataCorrection, Meter
from metering.services import meter_create, meter_type_create
from streams import services as stream_services
from streams.engine import services as engine_services
from tests.streams.conftest import ACTOR
from tests.streams.wiring.test_wiring import KEY, T0, make, meter_config, send, stream_config

pytestmark = pytest.mark.django_db

RUN_AT = T0 + datetime.timedelta(minutes=1)


@pytest.fixture
def collector(account):
    return Collector.objects.create(account=account, name="corrections", status=Collector.Status.ACTIVE)


def premium_type(account, name, active_from=T0):
    return meter_type_create(
        account_id=account.pk,
        name=name,
        unit="call",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        category="premium",
        active_from=active_from,
    )


# A meter processor with one guiding rule: pro plans to the premium category, nothing else routed.
ONLY_PREMIUM = {
    "meterKey": KEY,
    "guidingRules": [
        {
            "category": "premium",
            "conditions": [{"field": "plan", "type": "string", "operator": "equals", "value": "pro"}],
        }
    ],
}


def state(meter_type, user_id):
    meter = Meter.objects.get(meter_type=meter_type, user_id=user_id)
    return float(meter.value), meter.record_count, meter.groups, meter.group_breakdowns, meter.carry_last


def test_reprocessing_counts_into_every_meter_of_the_category_with_the_nodes_options(
    account, solution, collector
):
    with time_machine.travel(T0, tick=False):
        calls, seats = premium_type(account, "Premium calls"), premium_type(account, "Premium seats")
    with time_machine.travel(RUN_AT, tick=False):
        stream = make(
            account,
            solution,
            stream_config(collector.pk, meter=meter_config(groupBy=["region"], carryLast=["host"])),
        )
        send(account, collector, [{"userId": "u9", "value": 4, "plan": "pro", "region": "eu", "host": "h1"}])
        run = engine_services.stream_run_collected(stream_id=stream.pk)
        assert [r["reason"] for r in run.rejections] == [
            f"no meter of meterKey {KEY} for this userId in category premium"
        ]
        correction = DataCorrection.objects.get()
        for meter_type in (calls, seats):  # the customer gets both meters of the category
            meter_create(account_id=account.pk, meter_key=KEY, user_id="u9", meter_type_id=meter_type.pk)
        reprocessed = data_correction_reprocess(correction=correction)
        assert (reprocessed.status, reprocessed.message) == ("REPROCESSED", "Counted.")
        again = data_corrections_reprocess(account_id=account.pk, correction_ids=[correction.pk])
        assert again.reprocessed == 0  # not OPEN any more: left as it is
    expected = (
        4.0,
        1,
        [{"key": "premium", "value": 4, "recordCount": 1}],
        [{"fields": {"region": "eu"}, "value": 4, "recordCount": 1}],
        {"host": "h1"},
    )
    assert state(calls, "u9") == expected
    assert state(seats, "u9") == expected


def test_reprocessing_uses_the_streams_current_configuration(account, solution, collector):
    with time_machine.travel(T0, tick=False):
        calls = premium_type(account, "Premium calls")
        basic = meter_type_create(
            account_id=account.pk,
            name="Basic calls",
            unit="call",
            aggregation="SUM",
            reset_cron="0 0 1 * *",
            timezone="Etc/UTC",
            category="basic",
            active_from=T0,
        )
        for meter_type in (calls, basic):
            meter_create(account_id=account.pk, meter_key=KEY, user_id="u1", meter_type_id=meter_type.pk)
    with time_machine.travel(RUN_AT, tick=False):
        stream = make(account, solution, stream_config(collector.pk, meter=ONLY_PREMIUM))
        send(account, collector, [{"userId": "u1", "value": 3, "plan": "free"}])
        engine_services.stream_run_collected(stream_id=stream.pk)
        correction = DataCorrection.objects.get()
        assert (correction.reason, correction.node) == ("NO_MATCHING_METER", "meter")
        assert data_correction_reprocess(correction=correction).status == "OPEN"  # still no rule for it
        # The operator adds a guiding rule for the basic category; reprocessing follows it.
        fixed = {**ONLY_PREMIUM, "guidingRules": [*ONLY_PREMIUM["guidingRules"], {"category": "basic"}]}
        stream_services.stream_import(
            account=account,
            solution_id=solution.pk,
            actor=ACTOR,
            on_name_conflict="overwrite",
            stream_config=stream_config(collector.pk, meter=fixed),
        )
        assert data_correction_reprocess(correction=correction).status == "REPROCESSED"
    assert state(basic, "u1")[:3] == (3.0, 1, [{"key": "basic", "value": 3, "recordCount": 1}])
    assert state(calls, "u1")[:2] == (0.0, 0)


def test_a_record_the_meter_processor_cannot_route_keeps_the_processors_reason_in_data_correction(
    account, solution, collector
):
    with time_machine.travel(T0, tick=False):
        calls = premium_type(account, "Premium calls")
        meter_create(account_id=account.pk, meter_key=KEY, user_id="u1", meter_type_id=calls.pk)
    with time_machine.travel(RUN_AT, tick=False):
        stream = make(account, solution, stream_config(collector.pk, meter=ONLY_PREMIUM))
        send(
            account,
            collector,
            [{"userId": "u1", "value": 3, "plan": "free"}, {"userId": "u2", "value": 1, "plan": "pro"}],
        )
        run = engine_services.stream_run_collected(stream_id=stream.pk)
    messages = {c.record["userId"]: (c.reason, c.message) for c in DataCorrection.objects.all()}
    assert messages == {
        "u1": ("NO_MATCHING_METER", "No guiding rule matches the record."),
        "u2": ("NO_MATCHING_METER", f"No meter of meterKey {KEY} for this userId in category premium."),
    }
    assert sorted(r["reason"] for r in run.rejections) == [
        "no guiding rule matches the record",
        f"no meter of meterKey {KEY} for this userId in category premium",
    ]


def test_a_record_counted_into_one_meter_type_and_refused_by_another_counts_once_into_each(
    account, solution, collector
):
    with time_machine.travel(T0, tick=False):
        calls = premium_type(account, "Premium calls")
        later = premium_type(account, "Premium from noon", active_from=T0 + datetime.timedelta(hours=3))
        for meter_type in (calls, later):
            meter_create(account_id=account.pk, meter_key=KEY, user_id="u1", meter_type_id=meter_type.pk)
    with time_machine.travel(RUN_AT, tick=False):
        stream = make(account, solution, stream_config(collector.pk))
        send(
            account, collector, [{"userId": "u1", "value": 5, "plan": "pro", "timestamp": RUN_AT.isoformat()}]
        )
        run = engine_services.stream_run_collected(stream_id=stream.pk)
    assert (
        run.rejections[0]["reason"]
        == "OUTSIDE_ACTIVE_WINDOW: The timestamp is outside the meter type's active window."
    )
    assert (state(calls, "u1")[:2], state(later, "u1")[:2]) == ((5.0, 1), (0.0, 0))
    with time_machine.travel(T0 + datetime.timedelta(hours=4), tick=False):
        correction = DataCorrection.objects.get()
        fixed = data_correction_update(
            correction=correction,
            record={
                **correction.record,
                "timestamp": (T0 + datetime.timedelta(hours=3, minutes=30)).isoformat(),
            },
        )
        # Both meter types again, with the correction's keys: the one that counted it already
        # does not count it twice (even with the new timestamp); the other counts it now.
        assert data_correction_reprocess(correction=fixed).status == "REPROCESSED"
    assert (state(calls, "u1")[:2], state(later, "u1")[:2]) == ((5.0, 1), (5.0, 1))


def test_a_correction_of_a_meter_node_that_no_longer_exists_stays_open(account, solution, collector):
    with time_machine.travel(RUN_AT, tick=False):
        stream = make(account, solution, stream_config(collector.pk))
        send(account, collector, [{"userId": "nobody", "value": 1, "plan": "pro"}])
        engine_services.stream_run_collected(stream_id=stream.pk)
        stream_services.stream_delete(stream=stream)
        still = data_correction_reprocess(correction=DataCorrection.objects.get())
    assert (still.status, still.reason, still.message, still.attempts) == (
        "OPEN",
        "NO_MATCHING_METER",
        "The stream's meter processor 'meter' no longer exists.",
        2,
    )


def test_a_record_routed_only_on_reprocessing_to_a_key_another_open_correction_holds_is_its_duplicate(
    account, solution, collector
):
    """Two customers' records share one idempotencyKey: u1's reached its meter type and was refused
    (before the type's active window), u2's reached none (no meter yet). Reprocessed together, u2's
    now routes to the key u1's correction holds: it is that record's duplicate and counts nothing,
    and u1's stays open, whichever comes first (it counted u2's record before)."""
    with time_machine.travel(T0, tick=False):
        calls = premium_type(account, "Premium calls")
        meter_create(account_id=account.pk, meter_key=KEY, user_id="u1", meter_type_id=calls.pk)
    with time_machine.travel(RUN_AT, tick=False):
        stream = make(account, solution, stream_config(collector.pk))
        early = (T0 - datetime.timedelta(hours=1)).isoformat()
        send(
            account,
            collector,
            [
                {"userId": "u1", "value": 5, "plan": "pro", "timestamp": early, "idempotencyKey": "K"},
                {"userId": "u2", "value": 7, "plan": "pro", "idempotencyKey": "K"},
            ],
        )
        engine_services.stream_run_collected(stream_id=stream.pk)
        meter_create(account_id=account.pk, meter_key=KEY, user_id="u2", meter_type_id=calls.pk)
        ids = list(DataCorrection.objects.order_by("-created_at", "-pk").values_list("pk", flat=True))

        result = data_corrections_reprocess(account_id=account.pk, correction_ids=ids)

    assert (result.reprocessed, result.still_open) == (1, 1)
    corrections = {c.record["userId"]: c for c in DataCorrection.objects.all()}
    assert (corrections["u1"].status, corrections["u1"].reason) == ("OPEN", "OUTSIDE_ACTIVE_WINDOW")
    assert (corrections["u2"].status, corrections["u2"].message) == (
        "REPROCESSED",
        "A duplicate: another correction holds its idempotency key.",
    )
    assert (state(calls, "u1")[:2], state(calls, "u2")[:2]) == ((0.0, 0), (0.0, 0))
