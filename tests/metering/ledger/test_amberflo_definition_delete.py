"""Issue 21: deleting a meter definition after usage, a displayName that repeats, string groupInfo.

A definition is a meter type; once ingest made customers' meters, ``DELETE /meter-definition`` archives
the type (the ledger and the flushed history stay) and releases its meterApiName.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from metering import flush
from metering.models import DataCorrection, Meter, MeteredRecord, MeterType, UsageRecord
from tests.metering.factories import assert_error, meter_type_body
from tests.metering.ledger.conftest import NOW, PERIOD_END
from tests.metering.ledger.test_ledger_amberflo_api import frozen, key_client  # noqa: F401 - the clock

pytestmark = pytest.mark.django_db
MILLIS = int(NOW.timestamp() * 1000)
DEFINITION = {"meterApiName": "api-calls", "displayName": "API Calls", "type": "SUM_OF_ALL_USAGE"}


@pytest.fixture
def amber(account) -> APIClient:
    return key_client(account)


def ingest(client: APIClient, customer: str, value: float, unique_id: str, **dimensions: str):
    body = {
        "meterApiName": "api-calls",
        "customerId": customer,
        "meterValue": value,
        "meterTimeInMillis": MILLIS,
        "uniqueId": unique_id,
    }
    if dimensions:
        body["dimensions"] = dimensions
    response = client.post("/ingest", body, format="json")
    assert response.status_code == 200, response.content
    return response


def usage(client: APIClient, **overrides):
    body = {
        "meterApiName": "api-calls",
        "startTimeInSeconds": int((NOW - timedelta(hours=12)).timestamp()),
        "endTimeInSeconds": int((NOW + timedelta(hours=12)).timestamp()),
        "aggregation": "SUM",
        "timeGroupingInterval": "MONTH",
        **overrides,
    }
    return client.post("/usage", body, format="json")


def total(client: APIClient) -> float:
    [group] = usage(client).json()["clientMeters"]["api-calls"]
    return sum(value for record in group["records"] for value in record.values())


# --- 1. DELETE after usage ------------------------------------------------------------------------


def test_a_definition_deleted_after_usage_is_archived_and_its_name_can_be_taken_again(account, amber, api):
    assert amber.post("/meter-definition", DEFINITION, format="json").status_code == 200
    ingest(amber, "alice", 5, "evt-1")
    ingest(amber, "bob", 3, "evt-2")
    old = MeterType.objects.get(account=account)
    assert total(amber) == 8

    deleted = amber.delete("/meter-definition/api-calls")

    assert (deleted.status_code, deleted.json()) == (200, {"deletedCount": 1})
    assert_error(amber.get("/meter-definition/api-calls"), 404, "METER_DEFINITION_NOT_FOUND")
    assert amber.get("/meter-definition").json() == []
    assert_error(usage(amber), 404, "METER_DEFINITION_NOT_FOUND")
    assert_error(amber.delete("/meter-definition/api-calls"), 404, "METER_DEFINITION_NOT_FOUND")
    # The ledger stays; the Usage Engine shows the type archived, its meters still there.
    assert sorted(UsageRecord.objects.values_list("user_id", "value")) == [("alice", 5), ("bob", 3)]
    shown = api.get(f"/meter-types/{old.pk}").json()
    assert (shown["status"], shown["numberOfMeters"]) == ("ARCHIVED", 2)
    assert shown["apiName"] != "api-calls"

    # Ingest for the name is an unknown meter's: a correction, as for a name never defined.
    refused = ingest(amber, "alice", 1, "evt-3")
    unknown = amber.post(
        "/ingest",
        {"meterApiName": "never", "customerId": "alice", "meterValue": 1, "meterTimeInMillis": MILLIS},
        format="json",
    )
    assert refused["X-Ingest-Corrections"] == unknown["X-Ingest-Corrections"] == "1"
    assert set(DataCorrection.objects.values_list("reason", flat=True)) == {"NO_MATCHING_METER"}
    assert UsageRecord.objects.count() == 2

    # A new definition takes the name (and the displayName); its usage is its own.
    again = amber.post("/meter-definition", DEFINITION, format="json")
    assert again.status_code == 200, again.content
    ingest(amber, "alice", 2, "evt-4")
    # Ingest keys are per meterApiName: an event counted before the deletion stays counted once.
    assert ingest(amber, "alice", 5, "evt-1")["X-Ingest-Duplicates"] == "1"
    assert total(amber) == 2
    assert [d["meterApiName"] for d in amber.get("/meter-definition").json()] == ["api-calls"]
    new = MeterType.objects.get(account=account, status=MeterType.Status.ACTIVE)
    assert new.pk != old.pk
    assert UsageRecord.objects.filter(meter_type_id=old.pk).count() == 2
    assert UsageRecord.objects.filter(meter_type_id=new.pk).count() == 1

    # At the period's end the archived type's meters are flushed one last time, then deleted.
    flush.meters_flush_due(now=PERIOD_END + timedelta(minutes=1))
    assert not Meter.objects.filter(meter_type=old).exists()
    assert Meter.objects.filter(meter_type=new).count() == 1
    kept = MeteredRecord.objects.filter(meter_type_id=old.pk)
    assert sorted(kept.values_list("user_id", "value")) == [("alice", 5), ("bob", 3)]
    assert sorted(UsageRecord.objects.values_list("user_id", "value")) == [
        ("alice", 2),
        ("alice", 5),
        ("bob", 3),
    ]


def test_a_deleted_definition_reactivated_is_a_definition_again_under_its_released_name(account, amber, api):
    amber.post("/meter-definition", DEFINITION, format="json")
    ingest(amber, "alice", 5, "evt-1")
    amber.delete("/meter-definition/api-calls")
    old = MeterType.objects.get(account=account)
    amber.post("/meter-definition", DEFINITION, format="json")

    reactivated = api.patch(f"/meter-types/{old.pk}", {"status": "ACTIVE"}, format="json")

    assert reactivated.status_code == 200, reactivated.content
    released = reactivated.json()["apiName"]
    assert released.startswith("api-calls-deleted-")
    names = sorted(d["meterApiName"] for d in amber.get("/meter-definition").json())
    assert names == ["api-calls", released]
    assert total(amber) == 0
    [group] = usage(amber, meterApiName=released).json()["clientMeters"][released]
    assert sum(value for record in group["records"] for value in record.values()) == 5


def test_deleting_a_definition_is_scoped_to_the_account(account, other_account, amber):
    theirs = key_client(other_account)
    theirs.post("/meter-definition", DEFINITION, format="json")
    ingest(theirs, "alice", 5, "evt-1")

    assert_error(amber.delete("/meter-definition/api-calls"), 404, "METER_DEFINITION_NOT_FOUND")
    assert MeterType.objects.get(account=other_account).status == MeterType.Status.ACTIVE
    assert theirs.get("/meter-definition/api-calls").status_code == 200


def test_an_unused_definition_is_deleted_outright(account, amber):
    amber.post("/meter-definition", DEFINITION, format="json")
    assert amber.delete("/meter-definition/api-calls").json() == {"deletedCount": 1}
    assert not MeterType.objects.exists()


# --- 2. displayName is a label --------------------------------------------------------------------


def test_a_second_definition_with_a_taken_display_name_is_accepted(account, amber, api):
    first = amber.post("/meter-definition", DEFINITION, format="json")
    second = amber.post("/meter-definition", {**DEFINITION, "meterApiName": "api-calls-v2"}, format="json")

    assert (first.status_code, second.status_code) == (200, 200)
    listed = amber.get("/meter-definition").json()
    assert sorted((d["meterApiName"], d["displayName"]) for d in listed) == [
        ("api-calls", "API Calls"),
        ("api-calls-v2", "API Calls"),
    ]
    renamed = amber.put(
        "/meter-definition",
        {**DEFINITION, "meterApiName": "api-calls-v2", "displayName": "Other"},
        format="json",
    )
    assert renamed.status_code == 200
    back = amber.put("/meter-definition", {**DEFINITION, "meterApiName": "api-calls-v2"}, format="json")
    assert back.json()["displayName"] == "API Calls"
    # The meterApiName stays the key.
    assert_error(
        amber.post("/meter-definition", DEFINITION, format="json"), 409, "METER_TYPE_API_NAME_EXISTS"
    )


def test_the_usage_engine_still_refuses_a_taken_meter_type_name(account, amber, api):
    amber.post("/meter-definition", DEFINITION, format="json")

    # A name the Usage Engine gives is unique among every type it shows (seed 000), definitions too.
    assert_error(
        api.post("/meter-types", meter_type_body(name="API Calls", externalRef=None), format="json"),
        409,
        "METER_TYPE_NAME_EXISTS",
        "name",
    )
    assert (
        api.post("/meter-types", meter_type_body(name="Usage", externalRef=None), format="json").status_code
        == 201
    )
    assert_error(
        api.post("/meter-types", meter_type_body(name="Usage", externalRef=None), format="json"),
        409,
        "METER_TYPE_NAME_EXISTS",
        "name",
    )
    # A definition may carry a Usage Engine type's name as its label.
    named = amber.post(
        "/meter-definition", {**DEFINITION, "meterApiName": "u", "displayName": "Usage"}, format="json"
    )
    assert named.status_code == 200


# --- 3. groupInfo values are strings --------------------------------------------------------------


def test_usage_grouped_by_a_dimension_some_events_lack_answers_strings(amber):
    amber.post("/meter-definition", DEFINITION, format="json")
    ingest(amber, "alice", 5, "evt-1", region="eu")
    ingest(amber, "alice", 2, "evt-2")
    ingest(amber, "bob", 1, "evt-3", tier="gold")

    answer = usage(amber, groupBy=["region", "customerId"]).json()["clientMeters"]["api-calls"]

    assert [group["groupInfo"] for group in answer] == [
        {"region": "", "customerId": "alice"},
        {"region": "", "customerId": "bob"},
        {"region": "eu", "customerId": "alice"},
    ]
    assert all(isinstance(value, str) for group in answer for value in group["groupInfo"].values())
    blank = usage(amber, groupBy=["region"], filter={"region": [""]}).json()["clientMeters"]["api-calls"]
    assert [group["groupInfo"] for group in blank] == [{"region": ""}]
    assert sum(value for record in blank[0]["records"] for value in record.values()) == 3
