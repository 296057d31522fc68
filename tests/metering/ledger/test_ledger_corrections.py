"""Data correction: every reason, then a corrected record reprocessed into the meter (service, API, admin)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from accounts import services as account_services
from metering import corrections
from metering.ledger import UsageInput
from metering.models import DataCorrection, Meter, MeterType, UsageRecord
from tests.conftest import client_for
from tests.metering.factories import assert_error
from tests.metering.ledger.conftest import NOW, START, apply, make_meter, make_type, usage, value_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def calls(account):
    # Active until a minute from now: a record two minutes ahead is inside the clock skew but outside the window.
    meter_type = make_type(account, active_to=NOW + timedelta(minutes=1))
    make_meter(meter_type)
    return meter_type


def refused(account, record: UsageInput) -> DataCorrection:
    result = apply(account, [record])
    assert result.corrections == 1, result
    return DataCorrection.objects.get(pk=result.results[0].correction_id)


@pytest.mark.parametrize(
    "make_record,reason",
    [
        (lambda t: usage(t, user=None), "MISSING_USER_ID"),
        (lambda t: usage(t, user="   "), "MISSING_USER_ID"),
        (lambda t: usage(t, user="x" * 321), "INVALID_USER_ID"),
        (lambda t: usage(t, user={"id": 1}), "INVALID_USER_ID"),
        (lambda t: usage(t, value=None), "MISSING_VALUE"),
        (lambda t: usage(t, value="twelve"), "NON_NUMERIC_VALUE"),
        (lambda t: usage(t, value=float("nan")), "NON_NUMERIC_VALUE"),
        (lambda t: usage(t, value=float("inf")), "NON_NUMERIC_VALUE"),
        (lambda t: usage(t, value=True), "NON_NUMERIC_VALUE"),
        (lambda t: usage(t, value=Decimal("1e26")), "VALUE_OUT_OF_RANGE"),
        (lambda t: usage(t, at="last tuesday"), "INVALID_TIMESTAMP"),
        (lambda t: usage(t, at=NOW + timedelta(minutes=6)), "FUTURE_TIMESTAMP"),
        (lambda t: usage(t, at=NOW - timedelta(days=401)), "TIMESTAMP_TOO_OLD"),
        (lambda t: usage(t, at=START - timedelta(seconds=1)), "OUTSIDE_ACTIVE_WINDOW"),
        (lambda t: usage(t, at=NOW + timedelta(minutes=2)), "OUTSIDE_ACTIVE_WINDOW"),
        (lambda t: usage(t, user="nobody"), "NO_MATCHING_METER"),
        (lambda t: usage(None, meter_api_name="unknown"), "NO_MATCHING_METER"),
        (lambda t: usage(None), "NO_MATCHING_METER"),
        (lambda t: usage(t, meter_key="other"), "NO_MATCHING_METER"),
        (lambda t: usage(t, dimensions=["a"]), "INVALID_DIMENSIONS"),
    ],
)
def test_each_reason_is_kept_with_the_record(account, calls, make_record, reason, settings):
    correction = refused(account, make_record(calls))

    assert (correction.reason, correction.status, correction.source, correction.attempts) == (
        reason,
        "OPEN",
        "api",
        1,
    )
    assert correction.message
    assert not UsageRecord.objects.exists()


def test_an_archived_meter_type(account, calls):
    MeterType.objects.filter(pk=calls.pk).update(status=MeterType.Status.ARCHIVED)
    assert refused(account, usage(calls)).reason == "ARCHIVED_METER_TYPE"


def test_the_stored_record_is_the_record_as_given(account, calls):
    correction = refused(
        account,
        UsageInput(
            user_id=None,
            value="3",
            meter_api_name="api-calls",
            dimensions={"region": "eu"},
            idempotency_key="k1",
            node="meter-1",
        ),
    )

    assert correction.record == {"value": "3", "meterApiName": "api-calls", "dimensions": {"region": "eu"}}
    assert (correction.idempotency_key, correction.node) == ("k1", "meter-1")


@pytest.mark.parametrize(
    "make_record,reason,field,stored",
    [
        (lambda t: usage(t, user="al\x00ice"), "INVALID_USER_ID", "userId", "al\ufffdice"),
        (
            lambda t: usage(None, meter_api_name="api\x00calls"),
            "NO_MATCHING_METER",
            "meterApiName",
            "api\ufffdcalls",
        ),
        (
            lambda t: usage(t, dimensions={"region": "e\x00u"}),
            "INVALID_DIMENSIONS",
            "dimensions",
            {"region": "e\ufffdu"},
        ),
    ],
)
def test_a_record_holding_nul_characters_is_kept_with_them_replaced(
    account, calls, make_record, reason, field, stored
):
    # A stream's record may hold a NUL, which PostgreSQL stores in neither text nor jsonb: the
    # correction is stored anyway (a failing insert would stop the stream run on every retry).
    correction = refused(account, make_record(calls))

    assert (correction.reason, correction.record[field]) == (reason, stored)
    assert "\x00" not in correction.message


def test_a_replay_of_a_refused_record_is_a_duplicate_and_keeps_one_open_correction(account, calls):
    first = refused(account, usage(calls, user=None, key="k1"))
    # The key holds its first outcome: a replay is a duplicate even when it could be counted now.
    again = apply(account, [usage(calls, user=None, key="k1")])
    fixed = apply(account, [usage(calls, user="alice", key="k1")])

    assert [r.outcome for r in again.results + fixed.results] == ["DUPLICATE", "DUPLICATE"]
    assert list(DataCorrection.objects.values_list("pk", "status")) == [(first.pk, "OPEN")]
    assert UsageRecord.objects.count() == 0


def test_a_corrected_record_is_reprocessed_into_the_meter_exactly_once(account, calls):
    meter = Meter.objects.get(meter_type=calls)
    correction = refused(account, usage(calls, user=None, value=4, key="k1"))

    corrections.data_correction_update(correction=correction, record={**correction.record, "userId": "alice"})
    first = corrections.data_correction_reprocess(correction=correction)

    assert (first.status, first.message, first.resolved_at) == ("REPROCESSED", "Counted.", NOW)
    assert value_of(meter) == Decimal(4)
    assert UsageRecord.objects.get().idempotency_key == "k1"
    # The sender's replay of the original (now fixed) record is a duplicate, not a second count.
    assert apply(account, [usage(calls, value=4, key="k1")]).duplicates == 1
    with pytest.raises(corrections.DataCorrectionNotOpen):
        corrections.data_correction_reprocess(correction=correction)
    assert value_of(meter) == Decimal(4)


def test_a_record_still_refused_stays_open_with_its_new_reason(account, calls):
    correction = refused(account, usage(calls, user=None, key="k1"))
    corrections.data_correction_update(
        correction=correction, record={**correction.record, "userId": "nobody"}
    )

    again = corrections.data_correction_reprocess(correction=correction)

    assert (again.status, again.reason, again.attempts) == ("OPEN", "NO_MATCHING_METER", 2)
    assert not UsageRecord.objects.exists()


def test_reprocessing_many_and_discarding(account, calls, other_account):
    fixable = [refused(account, usage(calls, user=None, value=n, key=f"k{n}")) for n in range(1, 4)]
    hopeless = refused(account, usage(calls, user="nobody", key="h"))
    for correction in fixable:
        corrections.data_correction_update(
            correction=correction, record={**correction.record, "userId": "alice"}
        )

    result = corrections.data_corrections_reprocess(
        account_id=account.pk, correction_ids=[c.pk for c in fixable] + [hopeless.pk]
    )

    assert (result.reprocessed, result.still_open, result.discarded) == (3, 1, 0)
    assert Meter.objects.get(meter_type=calls).value == Decimal(6)
    assert corrections.data_corrections_discard(account_id=account.pk, correction_ids=[hopeless.pk]) == 1
    hopeless.refresh_from_db()
    assert hopeless.status == "DISCARDED"
    assert corrections.data_corrections_discard(account_id=account.pk, correction_ids=[hopeless.pk]) == 0
    theirs = refused(other_account, usage(None, meter_api_name="x"))
    with pytest.raises(corrections.DataCorrectionNotFound):
        corrections.data_corrections_discard(account_id=account.pk, correction_ids=[theirs.pk, hopeless.pk])
    theirs.refresh_from_db()
    assert theirs.status == "OPEN"


# --- API ------------------------------------------------------------------------------------------


@pytest.fixture
def listed(account, calls):
    """Three corrections of two reasons."""
    return [
        refused(account, usage(calls, user=None, key="a")),
        refused(account, usage(calls, user=None, key="b")),
        refused(account, usage(calls, value="x", key="c")),
    ]


def test_list_filter_and_read_corrections(api, listed):
    everything = api.get("/data-corrections?sortBy=createdAt")
    assert everything.status_code == 200
    assert len(everything.json()["dataCorrections"]) == 3
    missing = api.get("/data-corrections?reason=MISSING_USER_ID&limit=1&skip=1").json()["dataCorrections"]
    assert len(missing) == 1 and missing[0]["reason"] == "MISSING_USER_ID"
    assert api.get("/data-corrections?status=DISCARDED").json() == {"dataCorrections": []}

    one = api.get(f"/data-corrections/{listed[2].pk}").json()
    assert one == {
        "attempts": 1,
        "createdAt": "2027-01-10T12:00:00.000Z",
        "id": str(listed[2].pk),
        "idempotencyKey": "c",
        "message": "The value 'x' is not a number.",
        "node": "",
        "reason": "NON_NUMERIC_VALUE",
        "record": listed[2].record,
        "resolvedAt": None,
        "source": "api",
        "sourceRef": "",
        "status": "OPEN",
        "updatedAt": "2027-01-10T12:00:00.000Z",
    }


def test_patch_then_reprocess_one_through_the_api(api, account, calls, listed):
    meter = Meter.objects.get(meter_type=calls)
    record = {**listed[0].record, "userId": "alice"}

    patched = api.patch(f"/data-corrections/{listed[0].pk}", {"record": record}, format="json")
    reprocessed = api.post(f"/data-corrections/{listed[0].pk}/reprocess")

    assert (patched.status_code, patched.json()["record"]) == (200, record)
    assert (reprocessed.status_code, reprocessed.json()["status"]) == (200, "REPROCESSED")
    assert value_of(meter) == Decimal(1)
    assert_error(api.post(f"/data-corrections/{listed[0].pk}/reprocess"), 409, "DATA_CORRECTION_NOT_OPEN")
    assert_error(
        api.patch(f"/data-corrections/{listed[0].pk}", {"record": record}, format="json"),
        409,
        "DATA_CORRECTION_NOT_OPEN",
    )


def test_bulk_reprocess_and_discard_through_the_api(api, listed):
    reprocessed = api.post("/data-corrections/reprocess", {"ids": [str(c.pk) for c in listed]}, format="json")
    assert reprocessed.status_code == 200
    body = reprocessed.json()
    assert (body["reprocessed"], body["stillOpen"], body["discarded"]) == (0, 3, 0)
    assert sorted(c["attempts"] for c in body["dataCorrections"]) == [2, 2, 2]

    discarded = api.post("/data-corrections/discard", {"ids": [str(listed[0].pk)]}, format="json")
    assert discarded.json() == {"discarded": 1}


def test_correction_api_errors_scopes_and_tenancy(api, other_api, account, listed):
    assert_error(api.get("/data-corrections?reason=LATE"), 400, "VALIDATION_ERROR", "reason")
    assert_error(api.get("/data-corrections?status=done"), 400, "VALIDATION_ERROR", "status")
    assert_error(
        api.patch(f"/data-corrections/{listed[0].pk}", {"record": [1]}, format="json"),
        400,
        "VALIDATION_ERROR",
        "record",
    )
    assert_error(
        api.patch(f"/data-corrections/{listed[0].pk}", {"record": {}, "status": "DISCARDED"}, format="json"),
        400,
        "VALIDATION_ERROR",
        "status",
    )
    assert_error(
        api.post("/data-corrections/discard", {"ids": []}, format="json"), 400, "VALIDATION_ERROR", "ids"
    )
    assert_error(
        api.post("/data-corrections/discard", {"ids": [str(uuid.uuid4())]}, format="json"),
        404,
        "DATA_CORRECTION_NOT_FOUND",
    )
    # Another account's ids are 404 and change nothing.
    assert other_api.get("/data-corrections").json() == {"dataCorrections": []}
    assert_error(other_api.get(f"/data-corrections/{listed[0].pk}"), 404, "DATA_CORRECTION_NOT_FOUND")
    assert_error(
        other_api.patch(f"/data-corrections/{listed[0].pk}", {"record": {}}, format="json"),
        404,
        "DATA_CORRECTION_NOT_FOUND",
    )
    assert_error(
        other_api.post(f"/data-corrections/{listed[0].pk}/reprocess"), 404, "DATA_CORRECTION_NOT_FOUND"
    )
    assert_error(
        other_api.post("/data-corrections/discard", {"ids": [str(listed[0].pk)]}, format="json"),
        404,
        "DATA_CORRECTION_NOT_FOUND",
    )
    listed[0].refresh_from_db()
    assert (listed[0].status, listed[0].attempts) == ("OPEN", 1)
    reader = client_for(account, scopes=["usage-metering:read:data_corrections"], name="reader")
    assert reader.get("/data-corrections").status_code == 200
    assert_error(reader.post(f"/data-corrections/{listed[0].pk}/reprocess"), 403, "INSUFFICIENT_SCOPE")
    writer = client_for(account, scopes=["usage-metering:write:data_corrections"], name="writer")
    assert_error(writer.get("/data-corrections"), 403, "INSUFFICIENT_SCOPE")


# --- admin ----------------------------------------------------------------------------------------


@pytest.fixture
def staff(client, account):
    user = get_user_model().objects.create_user(username="ann", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="metering"))
    account_services.account_user_link(user=user, account=account)
    client.force_login(user)
    return client


def test_the_admin_lists_filters_edits_and_reprocesses_corrections(
    staff, account, calls, listed, other_account
):
    theirs = refused(other_account, usage(None, meter_api_name="x", key="theirs"))
    page = staff.get("/admin/metering/datacorrection/?reason__exact=MISSING_USER_ID")
    assert sorted(c.idempotency_key for c in page.context["cl"].result_list) == ["a", "b"]
    assert staff.get(f"/admin/metering/datacorrection/{theirs.pk}/change/").status_code == 302

    record = {"userId": "alice", "value": 2, "meterTypeId": str(calls.pk), "timestamp": NOW.isoformat()}
    edited = staff.post(
        f"/admin/metering/datacorrection/{listed[0].pk}/change/", {"record": json.dumps(record)}
    )
    assert edited.status_code == 302
    listed[0].refresh_from_db()
    assert listed[0].record["userId"] == "alice"

    staff.post(
        "/admin/metering/datacorrection/",
        {"action": "reprocess", "_selected_action": [str(listed[0].pk), str(listed[1].pk)]},
    )
    statuses = dict(DataCorrection.objects.filter(account=account).values_list("idempotency_key", "status"))
    assert statuses == {"a": "REPROCESSED", "b": "OPEN", "c": "OPEN"}
    assert Meter.objects.get(meter_type=calls).value == Decimal(2)

    staff.post(
        "/admin/metering/datacorrection/", {"action": "discard", "_selected_action": [str(listed[2].pk)]}
    )
    listed[2].refresh_from_db()
    assert listed[2].status == "DISCARDED"
    # A correction that is no longer OPEN is shown, not edited.
    assert (
        'name="record"'
        not in staff.get(f"/admin/metering/datacorrection/{listed[2].pk}/change/").content.decode()
    )


def test_save_and_reprocess_counts_the_edited_record_at_once(staff, account, calls, listed):
    correction = listed[0]  # no userId
    page = staff.get(f"/admin/metering/datacorrection/{correction.pk}/change/").content.decode()
    assert 'name="_reprocess"' in page
    assert "\n  &quot;value&quot;: 1" in page  # the record is indented for editing by hand

    fixed = dict(correction.record, userId="alice")
    response = staff.post(
        f"/admin/metering/datacorrection/{correction.pk}/change/",
        {"record": json.dumps(fixed), "_reprocess": "Save and reprocess"},
    )

    assert (response.status_code, response["Location"]) == (
        302,
        f"/admin/metering/datacorrection/{correction.pk}/change/",
    )
    correction.refresh_from_db()
    assert (correction.status, correction.record["userId"], correction.message) == (
        "REPROCESSED",
        "alice",
        "Counted.",
    )
    assert Meter.objects.get(meter_type=calls).value == Decimal(1)
    shown = staff.get(response["Location"]).content.decode()
    assert "Reprocessed: Counted." in shown
    assert 'name="_reprocess"' not in shown and 'name="record"' not in shown  # done: shown, not edited


def test_save_and_reprocess_of_a_record_still_refused_keeps_it_open_with_the_new_reason(staff, calls, listed):
    correction = listed[0]
    response = staff.post(
        f"/admin/metering/datacorrection/{correction.pk}/change/",
        {"record": json.dumps(dict(correction.record, userId="nobody")), "_reprocess": "Save and reprocess"},
        follow=True,
    )

    correction.refresh_from_db()
    assert (correction.status, correction.reason, correction.attempts) == ("OPEN", "NO_MATCHING_METER", 2)
    assert "Still refused (No matching meter (or meter type)): No meter of" in response.content.decode()
    assert Meter.objects.get(meter_type=calls).value == Decimal(0)
