"""Tenancy of references inside bodies and stored configurations (issue 18, item 1).

Every id or name a request body, a query or a stored stream configuration carries resolves inside
the caller's (or the stream's) account only: account B naming account A's resource gets what an
unknown name gets — a 404, "nothing found", or its own new resource — and nothing of A is read,
changed or revealed. ``REFERENCES`` in ``test_tenancy_sweep.py`` lists every such reference with
the test that shows it; its completeness test fails when the schema or a node type grows one that
is not listed. A is ``account`` (the victim), B is ``other_account``.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.utils import timezone

from metering.compat import amberflo
from metering.models import DataCorrection, Meter, UsageRecord
from parameters import services as parameter_services
from streams import services as stream_services
from streams.engine import deliveries
from streams.engine import services as engine_services
from streams.engine.context import NodeFailed, RunContext
from streams.engine.wiring import flushed_records
from streams.models import AggregationSession, AggregationStore, FlushDelivery, OutputDelivery
from tests.conftest import client_for
from tests.metering.factories import make_meter, make_meter_type, meter_type_body
from tests.reliability.resources import ACTOR
from tests.reliability.test_tenancy_sweep import account_rows
from tests.streams.engine.conftest import Receiver, chain

pytestmark = pytest.mark.django_db

KEY = "0a0a0a0a-0000-4000-8000-00000000face"


@pytest.fixture
def a(account):
    return client_for(account, name="victim")


@pytest.fixture
def b(other_account):
    return client_for(other_account, name="attacker")


def post(client, path: str, body, **headers):
    return client.post(path, json.dumps(body), content_type="application/json", headers=headers)


def imported(account, config: dict):
    solution = stream_services.solution_create(account=account, name=f"S {uuid.uuid4().hex[:6]}")
    return stream_services.stream_import(
        account=account, solution_id=str(solution.pk), stream_config=config, actor=ACTOR
    ).stream


def test_meter_bodies_name_meter_types_only_in_the_callers_account(b, account, other_account):
    theirs = make_meter_type(account, name="Theirs", external_ref="their-ref")
    make_meter(theirs, meter_key=KEY, user_id="u1")
    mine = make_meter_type(other_account, name="Mine")
    before = account_rows(account.pk)
    for body in ({"meterTypeId": str(theirs.pk)}, {"externalRef": "their-ref"}):
        response = post(b, "/meters", {**body, "meterKey": "k", "userId": "u"})
        assert response.status_code == 404, response.content
        assert response.json()["code"] == "METER_TYPE_NOT_FOUND"
    # meterKey and userId are the caller's own labels: the same ones as A's make B's meter, no 409.
    response = post(b, "/meters", {"meterTypeId": str(mine.pk), "meterKey": KEY, "userId": "u1"})
    assert response.status_code == 201, response.content
    assert account_rows(account.pk) == before


def test_names_are_unique_per_account_and_never_collide_with_another_accounts(b, account):
    make_meter_type(account, name="Shared name", external_ref="shared-ref")
    amberflo.meter_definition_create(
        account_id=account.pk,
        meter_api_name="shared-api",
        display_name="Shared",
        kind=amberflo.SUM_OF_ALL_USAGE,
    )
    parameter_services.parameter_create(account=account, name="shared/param", type="standard", value="a")
    before = account_rows(account.pk)
    created = [
        post(b, "/meter-types", meter_type_body(name="Shared name", externalRef="shared-ref")),
        post(
            b,
            "/meter-definition",
            {"meterApiName": "shared-api", "displayName": "Shared", "type": "SUM_OF_ALL_USAGE"},
        ),
        post(b, "/parameters", {"name": "shared/param", "type": "standard", "value": "b"}),
        post(b, "/online-collection/collectors", {"name": "Collector Name"}),
    ]
    assert [response.status_code for response in created] == [201, 200, 201, 201], [
        r.content for r in created
    ]
    assert account_rows(account.pk) == before


def test_amberflo_and_billing_bodies_resolve_names_in_the_callers_account(b, account):
    meter_type = amberflo.meter_definition_create(
        account_id=account.pk,
        meter_api_name="their-api",
        display_name="Theirs",
        kind=amberflo.SUM_OF_ALL_USAGE,
    )
    make_meter(meter_type, meter_key=KEY, user_id="u1")
    rule = amberflo.filtering_rule_save(
        account_id=account.pk,
        meter_api_name="their-api",
        dimension_name="region",
        dimension_values=["eu"],
        action="INCLUDE",
    )
    now = int(time.time())
    before = account_rows(account.pk)
    answers = {
        "ingest": post(
            b,
            "/ingest",
            [
                {
                    "customerId": "u1",
                    "meterApiName": "their-api",
                    "meterValue": 5,
                    "meterTimeInMillis": now * 1000,
                }
            ],
        ),
        "usage": post(
            b,
            "/usage",
            {
                "meterApiName": "their-api",
                "aggregation": "SUM",
                "timeGroupingInterval": "DAY",
                "startTimeInSeconds": now - 86400,
                "endTimeInSeconds": now + 3600,
            },
        ),
        "definition": b.put(
            "/meter-definition",
            json.dumps({"meterApiName": "their-api", "displayName": "Hijacked"}),
            content_type="application/json",
        ),
        "rule by name": post(
            b,
            "/meter-event-filtering-rules",
            {
                "meterApiName": "their-api",
                "dimensionName": "region",
                "dimensionValues": ["us"],
                "action": "EXCLUDE",
            },
        ),
        "billing by id": post(
            b,
            "/billing/meters/usage",
            {"meterId": str(meter_type.pk), "customerId": "u1", "value": 5},
            **{"Idempotency-Key": uuid.uuid4().hex},
        ),
        "billing by name": post(
            b,
            "/billing/meters/usage",
            {"meterName": "their-api", "customerId": "u1", "value": 5},
            **{"Idempotency-Key": uuid.uuid4().hex},
        ),
    }
    # /ingest answers the batch 200 (seed 002) and keeps the event for B's own data correction.
    assert answers.pop("ingest").status_code == 200
    assert {name: response.status_code for name, response in answers.items()} == dict.fromkeys(answers, 404)
    for response in answers.values():
        assert "Theirs" not in response.content.decode() and str(rule.pk) not in response.content.decode()
    # B's own definition and rule: naming A's rule id reaches nothing of A's.
    amberflo.meter_definition_create(
        account_id=b.account.pk, meter_api_name="mine", display_name="Mine", kind=amberflo.SUM_OF_ALL_USAGE
    )
    response = post(
        b,
        "/meter-event-filtering-rules",
        {
            "meterApiName": "mine",
            "ruleId": str(rule.pk),
            "dimensionName": "region",
            "dimensionValues": ["us"],
            "action": "EXCLUDE",
        },
    )
    assert response.status_code in (200, 201, 404), response.content
    assert account_rows(account.pk) == before
    assert not UsageRecord.objects.filter(account=account).exists()
    assert DataCorrection.objects.filter(account=b.account, reason="NO_MATCHING_METER").exists()


def test_idempotency_keys_and_unique_ids_are_scoped_per_account(a, b, account, other_account):
    """The same key or uniqueId in another account is a new request there, never A's replay."""
    for owner in (account, other_account):
        amberflo.meter_definition_create(
            account_id=owner.pk, meter_api_name="calls", display_name="Calls", kind=amberflo.SUM_OF_ALL_USAGE
        )
    event = {"customerId": "u1", "meterApiName": "calls", "meterValue": 3, "uniqueId": "evt-1"}
    event["meterTimeInMillis"] = int(time.time() * 1000)
    assert post(a, "/ingest", [event]).status_code == 200
    assert post(b, "/ingest", [event]).status_code == 200
    assert UsageRecord.objects.filter(account=account).count() == 1
    assert UsageRecord.objects.filter(account=other_account).count() == 1
    billed = {"meterName": "calls", "customerId": "u1", "value": 2}
    first = post(a, "/billing/meters/usage", billed, **{"Idempotency-Key": "same-key"})
    second = post(b, "/billing/meters/usage", billed, **{"Idempotency-Key": "same-key"})
    assert (first.status_code, second.status_code) == (202, 202), (first.content, second.content)
    assert first.json()["requestId"] != second.json()["requestId"]
    assert second.json()["status"] == "queued"


def test_data_correction_bodies_name_only_the_callers_corrections(b, account):
    meter_type = make_meter_type(account, name="Corrected")
    from metering.ledger import UsageInput, usage_apply

    result = usage_apply(
        account_id=account.pk,
        source="api",
        records=[UsageInput(user_id=None, value=1, timestamp=timezone.now(), meter_type_id=meter_type.pk)],
    )
    theirs = str(result.results[0].correction_id)
    before = account_rows(account.pk)
    for path in ("/data-corrections/discard", "/data-corrections/reprocess"):
        response = post(b, path, {"ids": [theirs]})
        assert response.status_code == 404, response.content
    # B's own correction, corrected to name A's meter type: reprocessing it finds no such type in B.
    own = usage_apply(
        account_id=b.account.pk,
        source="api",
        records=[UsageInput(user_id=None, value=1, timestamp=timezone.now(), meter_type_id=uuid.uuid4())],
    )
    own_id = str(own.results[0].correction_id)
    patched = b.patch(
        f"/data-corrections/{own_id}",
        json.dumps({"record": {"userId": "u1", "value": 1, "meterTypeId": str(meter_type.pk)}}),
        content_type="application/json",
    )
    assert patched.status_code == 200, patched.content
    assert post(b, "/data-corrections/reprocess", {"ids": [own_id]}).status_code == 200
    assert DataCorrection.objects.get(pk=own_id).status == DataCorrection.Status.OPEN
    assert account_rows(account.pk) == before


def test_queries_naming_another_accounts_resources_find_nothing_of_it(a, b, account, other_account):
    meter_type = amberflo.meter_definition_create(
        account_id=account.pk,
        meter_api_name="queried",
        display_name="Queried",
        kind=amberflo.SUM_OF_ALL_USAGE,
    )
    make_meter(meter_type, meter_key=KEY, user_id="u1")
    rule = amberflo.filtering_rule_save(
        account_id=account.pk,
        meter_api_name="queried",
        dimension_name="region",
        dimension_values=["eu"],
        action="INCLUDE",
    )
    parameter_services.parameter_create(account=account, name="queried/param", type="standard", value="v")
    stream = imported(
        account, {**chain(("count", "meter", {"meterKey": KEY}), name="Theirs"), "tag": "their-tag"}
    )
    own = imported(other_account, chain(name="Mine"))
    secrets = {str(meter_type.pk), str(stream.pk), str(rule.pk), "Queried", "queried/param", KEY}
    queries = [
        ("/meters", {"meterTypeId": str(meter_type.pk)}),
        ("/meters", {"meterKey": KEY}),
        ("/meters", {"userId": "u1"}),
        ("/meter-types", {"name": "Queried"}),
        ("/parameters", {"name": "queried/param"}),
        ("/streams", {"solutionId": str(stream.solution_id)}),
        ("/streams", {"name": "Theirs"}),
        ("/streams", {"resourceRefs": f"meterKey:{KEY}"}),
        ("/meter-event-filtering-rules", {"meterApiName": "queried"}),
        ("/billing/meters/subscriptions", {"meterName": "queried"}),
    ]
    for path, query in queries:
        mine, theirs = b.get(path, query), a.get(path, query)
        assert mine.status_code in (200, 404), (path, query, mine.content[:300])
        assert not {secret for secret in secrets if secret in mine.content.decode()}, (path, query)
        if theirs.status_code == 200 and path != "/billing/meters/subscriptions":
            assert {secret for secret in secrets if secret in theirs.content.decode()}, (path, query)
    # A stream's version tag names only that stream's versions: B's own stream with A's tag → 404.
    for path in (f"/streams/{own.pk}", f"/streams/{own.pk}/export"):
        assert b.get(path, {"tag": "their-tag"}).status_code == 404, path
    assert b.get(f"/streams/{own.pk}/versions", {"resourceRefs": f"meterKey:{KEY}"}).json()["versions"] == []
    assert a.get(f"/streams/{stream.pk}", {"tag": "their-tag"}).status_code == 200
    response = post(b, f"/streams/{own.pk}/preview", {"records": [{"chargerId": "c1"}], "tag": "their-tag"})
    assert response.status_code == 404, response.content


# --- Stored configurations ----------------------------------------------------------------------


SCRIPT = "{'kwh': (has(session.kwh) ? session.kwh : 0.0) + record.kwh}"


def test_store_ids_in_configs_resolve_in_the_streams_account(a, b, account, other_account):
    store_id = str(uuid.uuid4())
    theirs = imported(
        account,
        chain(
            (
                "agg",
                "scriptAggregator",
                {"storeId": store_id, "keyFields": ["chargerId"], "timeoutSeconds": 3600, "script": SCRIPT},
            ),
            name="Theirs",
        ),
    )
    engine_services.stream_run_execute(stream_id=theirs.pk, records=[{"chargerId": "c1", "kwh": 7.0}])
    their_store = AggregationStore.objects.get(account=account, store_id=store_id)
    before = account_rows(account.pk)
    # B declares the same store id with another kind and other key fields: no conflict with A's
    # (that would reveal it), B gets a store of its own.
    mine = imported(
        other_account,
        chain(
            (
                "agg",
                "dataAggregator",
                {
                    "storeId": store_id,
                    "keyFields": ["site", "chargerId"],
                    "aggregations": [{"target": "n", "function": "count"}],
                },
            ),
            name="Mine",
        ),
    )
    engine_services.stream_run_execute(
        stream_id=mine.pk, records=[{"site": "s", "chargerId": "c1", "kwh": 1.0}]
    )
    assert account_rows(account.pk) == before
    assert AggregationStore.objects.get(account=account, store_id=store_id) == their_store
    assert AggregationSession.objects.filter(store=their_store).get().data == {"kwh": 7.0}
    looked_up = b.get(f"/aggregation/stores/{store_id}/sessions/lookup", {"fieldValues": ["c1"]})
    assert "7.0" not in looked_up.content.decode() and looked_up.status_code in (200, 400, 404)
    assert (
        "7.0"
        in a.get(f"/aggregation/stores/{store_id}/sessions/lookup", {"fieldValues": ["c1"]}).content.decode()
    )


def test_meter_keys_in_configs_count_only_into_the_streams_account(b, account, other_account):
    meter_type = make_meter_type(account, name="Counted")
    their_meter = make_meter(meter_type, meter_key=KEY, user_id="u1")
    mine = imported(other_account, chain(("count", "meter", {"meterKey": KEY}), name="Mine"))
    before = account_rows(account.pk)
    run = engine_services.stream_run_execute(stream_id=mine.pk, records=[{"userId": "u1", "value": 5}])
    assert run.status == "SUCCEEDED", run.error
    assert account_rows(account.pk) == before
    assert Meter.objects.get(pk=their_meter.pk).value == their_meter.value
    assert DataCorrection.objects.filter(account=other_account, reason="NO_MATCHING_METER").count() == 1
    # A flush of A's meters is routed only to A's streams counting that meter key, never to B's.
    theirs = imported(
        account, chain(("count", "meter", {"meterKey": KEY}), ("seen", "inspect", {}), name="Theirs")
    )
    imported(
        other_account, chain(("count", "meter", {"meterKey": KEY}), ("seen", "inspect", {}), name="Also")
    )
    flushed_records([{"meterKey": KEY, "accountId": str(account.pk), "userId": "u1", "value": 1}])
    assert list(FlushDelivery.objects.values_list("stream_id", flat=True)) == [theirs.pk]


def test_parameter_references_resolve_in_the_streams_account(account, other_account, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    parameter_services.parameter_create(
        account=account, name="shared/token", type="sensitive", value="their-secret"
    )
    receiver = Receiver()
    try:
        config = chain(
            (
                "out",
                "httpForwarder",
                {"url": receiver.url, "headers": {"Authorization": "Bearer {{param:shared/token}}"}},
            ),
            name="Mine",
        )
        mine = imported(other_account, config)
        theirs = imported(account, {**config, "name": "Theirs"})
        with pytest.raises(NodeFailed, match="global parameter 'shared/token'"):
            RunContext(account_id=other_account.pk, stream=mine, now=timezone.now()).parameter(
                "out", "shared/token"
            )
        engine_services.stream_run_execute(stream_id=mine.pk, records=[{"n": 1}])
        deliveries.output_deliveries_send(stream_id=mine.pk, node_id="out")
        assert receiver.requests == []
        delivery = OutputDelivery.objects.get(stream=mine)
        assert "shared/token" in delivery.last_error and "their-secret" not in delivery.last_error
        # The control: A's own stream resolves A's parameter.
        engine_services.stream_run_execute(stream_id=theirs.pk, records=[{"n": 1}])
        deliveries.output_deliveries_send(stream_id=theirs.pk, node_id="out")
        assert [request["headers"]["Authorization"] for request in receiver.requests] == [
            "Bearer their-secret"
        ]
    finally:
        receiver.close()
