"""Tenancy sweep: another account's ids are 404 and change nothing, on every endpoint and method.

The endpoints come from the service's own OpenAPI schema, so a new endpoint is swept the moment it
exists. Account A gets one of every resource (``FACTORIES``, keyed by the schema's path); account B,
holding every scope, then calls every method of every path that names a resource, with A's id or
name: each call must be a JSON 404, and A's rows (every row of every model that belongs to an
account) must be exactly as before. A path without a factory, or a body-taking operation without
an entry in ``BODIES``, fails the sweep: the next endpoint cannot slip through untested.

Also: B's lists (every GET without a path parameter, with A's ids in its uuid query parameters
too) never show A's ids; and create/update bodies carrying fields the API does not take
(``accountId``, ``id``, ``value``, ``cas``, ``numberOfMeters``, ``createdAt``…) are refused (400) or
ignored, never stored: B's new or changed rows belong to B and hold none of the injected values.
"""

from __future__ import annotations

import importlib
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from django.apps import apps
from django.test import Client

from accounts import services as account_services
from accounts.models import Account
from parameters import services as parameter_services
from streams import services as stream_services
from streams.nodes import NODE_TYPES
from tests.conftest import client_for
from tests.metering.factories import make_meter_type, meter_type_body
from tests.reliability.resources import FACTORIES, resource_url
from tests.streams.engine.conftest import chain

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


# --- Bodies: every operation that takes one ------------------------------------------------------
# (method, path) → body(B's own resources, A's resources) that would succeed for B's own data, so that
# a 404 can only come from the other account's id. None: the operation has no body to give.

BODIES: dict[tuple[str, str], Callable[[dict, dict], dict]] = {
    ("post", "/oauth/token"): lambda mine, theirs: mine["token_request"],
    ("post", "/meter-types"): lambda mine, theirs: meter_type_body(name="New type", externalRef="new-ref"),
    ("patch", "/meter-types/{id}"): lambda mine, theirs: {"description": "changed"},
    ("post", "/meters"): lambda mine, theirs: {
        "meterTypeId": mine["meter_type_id"],
        "meterKey": "k-new",
        "userId": "someone@example.com",
    },
    ("patch", "/meters/{id}"): lambda mine, theirs: {"customFields": {"changed": True}},
    ("post", "/notification-endpoints"): lambda mine, theirs: {"url": "https://93.184.215.14/new"},
    ("patch", "/notification-endpoints/{id}"): lambda mine, theirs: {"description": "changed"},
    ("post", "/parameters"): lambda mine, theirs: {"name": "injected/name", "type": "standard", "value": "v"},
    ("delete", "/parameters"): lambda mine, theirs: {"parameters": [mine["parameter"]]},
    ("patch", "/parameters/{name}"): lambda mine, theirs: {"value": "changed"},
    ("post", "/streams/import"): lambda mine, theirs: {
        "solutionId": mine["solution_id"],
        "streamConfig": chain(name="Injected stream"),
    },
    ("post", "/streams/{id}/preview"): lambda mine, theirs: {"records": [{"chargerId": "c1", "kwh": 1.0}]},
    ("patch", "/data-corrections/{id}"): lambda mine, theirs: {
        "record": {"userId": "fixed@example.com", "value": 1}
    },
    ("post", "/data-corrections/discard"): lambda mine, theirs: {"ids": [mine["correction_id"]]},
    ("post", "/data-corrections/reprocess"): lambda mine, theirs: {"ids": [mine["correction_id"]]},
    ("post", "/meter-definition"): lambda mine, theirs: {
        "meterApiName": f"new-{uuid.uuid4().hex[:8]}",
        "displayName": "New definition",
        "type": "SUM_OF_ALL_USAGE",
    },
    ("put", "/meter-definition"): lambda mine, theirs: {
        "meterApiName": mine["meter_api_name"],
        "displayName": "Changed",
    },
    ("post", "/meter-event-filtering-rules"): lambda mine, theirs: {
        "meterApiName": mine["meter_api_name"],
        "dimensionName": "region",
        "dimensionValues": ["eu"],
        "action": "INCLUDE",
    },
    ("post", "/online-collection/collectors"): lambda mine, theirs: {
        "name": f"Collector {uuid.uuid4().hex[:8]}"
    },
    ("patch", "/online-collection/collectors/{id}"): lambda mine, theirs: {
        "name": f"Renamed {uuid.uuid4().hex[:8]}"
    },
    ("post", "/online-collection/collectors/{id}/data"): lambda mine, theirs: {"data": {"reading": 1}},
    ("post", "/ingest"): lambda mine, theirs: {
        "customerId": "someone",
        "meterApiName": mine["meter_api_name"],
        "meterValue": 1,
        "meterTimeInMillis": int(time.time() * 1000),
    },
    ("post", "/usage"): lambda mine, theirs: {
        "meterApiName": mine["meter_api_name"],
        "aggregation": "SUM",
        "timeGroupingInterval": "DAY",
        "startTimeInSeconds": int(time.time()) - 86400,
        "endTimeInSeconds": int(time.time()) + 3600,
    },
    ("post", "/usage/batch"): lambda mine, theirs: [
        {
            "meterApiName": mine["meter_api_name"],
            "aggregation": "SUM",
            "timeGroupingInterval": "DAY",
            "timeRange": {"startTimeInSeconds": int(time.time()) - 86400},
        }
    ],
    ("post", "/billing/meters/usage"): lambda mine, theirs: {
        "meterName": mine["meter_api_name"],
        "customerId": "someone",
        "value": 1,
    },
}

# Operations whose body names another resource: B naming A's resource there is a 404 too (or, for a
# bulk delete by name, "not found" in the answer), and changes nothing.
FOREIGN_REFERENCES: dict[tuple[str, str], tuple[Callable[[dict, dict], dict], Callable[[Any], None]]] = {}


def _expect_404(response) -> None:
    _assert_json_error(response, 404)


def _expect_name_not_found(response) -> None:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["deletedCount"] == 0 and body["deletedParameters"] == [], body
    assert len(body["invalidParameters"]) == 1, body


FOREIGN_REFERENCES.update(
    {
        ("post", "/meters"): (
            lambda mine, theirs: {"meterTypeId": theirs["meter_type_id"], "meterKey": "k", "userId": "u"},
            _expect_404,
        ),
        ("post", "/streams/import"): (
            lambda mine, theirs: {
                "solutionId": theirs["solution_id"],
                "streamConfig": chain(name="Into theirs"),
            },
            _expect_404,
        ),
        ("delete", "/parameters"): (
            lambda mine, theirs: {"parameters": [theirs["parameter"]]},
            _expect_name_not_found,
        ),
    }
)


# Lists that need a query parameter: (B's or A's references) → the query naming that account's own resource.
LIST_QUERIES: dict[str, Callable[[dict], dict]] = {
    "/billing/meters/subscriptions": lambda refs: {"meterName": refs["meter_api_name"]},
    "/meter-event-filtering-rules": lambda refs: {"meterApiName": refs["meter_api_name"]},
}

# Headers an operation requires besides the token (a fresh Idempotency-Key per call).
HEADERS: dict[tuple[str, str], Callable[[], dict[str, str]]] = {
    ("post", "/billing/meters/usage"): lambda: {"Idempotency-Key": uuid.uuid4().hex},
}


# --- Helpers ----------------------------------------------------------------------------------------


def _account_field(model) -> str | None:
    for model_field in model._meta.concrete_fields:
        if model_field.is_relation and model_field.related_model is Account:
            return model_field.attname
    return None


ACCOUNT_MODELS = [(model, _account_field(model)) for model in apps.get_models() if _account_field(model)]


def _key(model, row: dict) -> Any:
    """The row's primary key (a tuple for a composite one, which ``values()`` only has field by field)."""
    return tuple(row[pk_field.attname] for pk_field in model._meta.pk_fields)


def account_rows(account_id: uuid.UUID) -> dict[tuple[str, Any], dict]:
    """Every row of every model that belongs to the account, by (model, primary key)."""
    rows = {}
    for model, account_field in ACCOUNT_MODELS:
        for row in model.objects.filter(**{account_field: account_id}).values():
            rows[(model._meta.label, _key(model, row))] = row
    return rows


def all_account_rows() -> dict[tuple[str, Any], tuple[Any, dict]]:
    """Every row of every account, as (owner account id, row)."""
    rows = {}
    for model, account_field in ACCOUNT_MODELS:
        for row in model.objects.values():
            rows[(model._meta.label, _key(model, row))] = (row[account_field], row)
    return rows


def _assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    return body


def _call(client, method: str, url: str, body: dict | None = None, query: dict | None = None):
    headers = HEADERS[(method, url)]() if (method, url) in HEADERS else {}
    if query:
        url += "?" + "&".join(f"{name}={value}" for name, values in query.items() for value in values)
    if body is None:
        return getattr(client, method)(url, headers=headers)
    return getattr(client, method)(
        url, data=json.dumps(body), content_type="application/json", headers=headers
    )


def _operations() -> dict[str, dict[str, dict]]:
    schema = Client().get("/openapi.json").json()
    return {
        path: {method: operation for method, operation in item.items() if method in METHODS}
        for path, item in schema["paths"].items()
    }


@pytest.fixture
def world(account, other_account):
    """A (``account``) owns one of every resource; B (``other_account``) has its own to write with."""
    theirs = {template: factory(account) for template, factory in FACTORIES.items()}
    parameter_services.parameter_create(account=other_account, name="mine/param", type="standard", value="v")
    my_type = make_meter_type(other_account, name="Mine")
    my_solution = stream_services.solution_create(account=other_account, name="Mine")
    access, secret = account_services.application_access_create(
        account=other_account, name="token", scopes=["all"]
    )
    my_definition = FACTORIES["/meter-definition/{meterApiName}"](other_account).path["meterApiName"]
    my_correction = FACTORIES["/data-corrections/{id}"](other_account).path["id"]
    mine = {
        "meter_type_id": str(my_type.pk),
        "solution_id": str(my_solution.pk),
        "parameter": "mine/param",
        "meter_api_name": my_definition,
        "correction_id": my_correction,
        "token_request": {
            "grant_type": "client_credentials",
            "client_id": access.client_id,
            "client_secret": secret,
        },
    }
    their_refs = {
        "meter_type_id": theirs["/meters/{id}"].identifiers - {theirs["/meters/{id}"].path["id"]},
        "solution_id": None,
        "parameter": theirs["/parameters/{name}"].path["name"],
        "meter_api_name": theirs["/meter-definition/{meterApiName}"].path["meterApiName"],
    }
    their_refs["meter_type_id"] = next(iter(their_refs["meter_type_id"]))
    stream_resource = theirs["/streams/{id}"]
    their_refs["solution_id"] = next(iter(stream_resource.identifiers - {stream_resource.path["id"]}))
    return {
        "a": client_for(account, name="a"),
        "b": client_for(other_account, name="b"),
        "theirs": theirs,
        "their_refs": their_refs,
        "mine": mine,
        "a_id": account.pk,
        "b_id": other_account.pk,
    }


# --- The sweep -------------------------------------------------------------------------------------


def test_every_resource_path_has_a_factory_and_every_body_operation_a_body():
    operations = _operations()
    resource_paths = {path for path in operations if "{" in path}
    assert resource_paths - set(FACTORIES) == set(), "add a factory to FACTORIES for these paths"
    assert set(FACTORIES) - resource_paths == set(), "these paths no longer exist: remove their factories"
    with_body = {
        (method, path)
        for path, methods in operations.items()
        for method, operation in methods.items()
        if "requestBody" in operation
    }
    assert with_body - set(BODIES) == set(), "add a valid body to BODIES for these operations"
    assert set(BODIES) - with_body == set(), "these operations no longer take a body: remove them from BODIES"


def test_another_accounts_resources_are_404_for_every_method_and_change_nothing(world):
    operations = _operations()
    swept = []
    for template, methods in operations.items():
        if "{" not in template:
            continue
        resource = world["theirs"][template]
        url = resource_url(template, resource)
        for method in sorted(methods, key=("get", "post", "patch", "put", "delete").index):
            body = (
                BODIES[(method, template)](world["mine"], world["their_refs"])
                if (method, template) in BODIES
                else None
            )
            before = account_rows(world["a_id"])
            response = _call(world["b"], method, url, body, resource.query)
            _assert_json_error(response, 404)
            assert account_rows(world["a_id"]) == before, f"{method.upper()} {template} changed A's rows"
            # The 404 is tenancy, not a bad id: the owner reaches the same resource with the same call.
            if method == "get":
                assert _call(world["a"], method, url, body, resource.query).status_code == 200, template
            swept.append(f"{method.upper()} {template}")
    assert len(swept) == sum(len(methods) for path, methods in operations.items() if "{" in path)
    assert len(swept) >= 16


def test_the_owner_reaches_every_resource_with_every_method(world):
    """The other side of the sweep: the same calls as A are never 404 (they are what B was refused)."""
    operations = _operations()
    for template, methods in operations.items():
        if "{" not in template:
            continue
        resource = world["theirs"][template]
        for method in sorted(methods, key=("get", "post", "patch", "put", "delete").index):
            mine = {**world["mine"]}
            body = (
                BODIES[(method, template)](mine, world["their_refs"])
                if (method, template) in BODIES
                else None
            )
            response = _call(world["a"], method, resource_url(template, resource), body, resource.query)
            assert response.status_code < 400, (method, template, response.content[:300])


def test_bodies_naming_another_accounts_resources_are_refused_and_change_nothing(world):
    for (method, path), (make_body, expect) in FOREIGN_REFERENCES.items():
        before = account_rows(world["a_id"])
        response = _call(world["b"], method, path, make_body(world["mine"], world["their_refs"]))
        expect(response)
        assert account_rows(world["a_id"]) == before, f"{method.upper()} {path} changed A's rows"


def test_lists_never_show_another_accounts_ids(world):
    operations = _operations()
    identifiers = set().union(*(resource.identifiers for resource in world["theirs"].values()))
    lists = [
        (path, operation)
        for path, methods in operations.items()
        if "{" not in path
        for method, operation in methods.items()
        if method == "get"
    ]
    assert len(lists) >= 5
    for path, operation in lists:
        query = LIST_QUERIES.get(path, lambda refs: {})
        mine = world["b"].get(path, query(world["mine"]))
        assert mine.status_code == 200, (path, mine.content[:300])
        leaked = {identifier for identifier in identifiers if identifier in mine.content.decode()}
        assert leaked == set(), f"GET {path} as B shows A's {leaked}"
        # The owner does see them there: the check above could fail.
        owners = world["a"].get(path, query(world["their_refs"])).content.decode()
        assert any(identifier in owners for identifier in identifiers), (
            f"GET {path} lists none of A's resources"
        )
        # Filters by id: A's ids as B's filter values find nothing of A's.
        uuid_filters = [
            parameter["name"]
            for parameter in operation.get("parameters", [])
            if parameter["in"] == "query" and parameter["schema"].get("format") == "uuid"
        ]
        for name in uuid_filters:
            for identifier in identifiers:
                filtered = world["b"].get(path, {name: identifier})
                assert filtered.status_code in (200, 400, 404), (path, name, filtered.content[:300])
                leaked = {other for other in identifiers if other in filtered.content.decode()}
                assert leaked == set(), f"GET {path}?{name}=… as B shows A's {leaked}"


SENTINEL_ID = "00000000-0000-4000-8000-00000000beef"
SENTINEL_NUMBER = 987654321
SENTINEL_TIME = "2001-02-03T04:05:06.000Z"
SENTINEL_TEXT = "sentinel-injected"
INJECTED = {
    "id": SENTINEL_ID,
    "accountId": None,
    "account": None,
    "account_id": None,
    "value": SENTINEL_NUMBER,
    "counters": {"value": SENTINEL_NUMBER},
    "recordCount": SENTINEL_NUMBER,
    "numberOfMeters": SENTINEL_NUMBER,
    "cas": SENTINEL_NUMBER,
    "createdAt": SENTINEL_TIME,
    "updatedAt": SENTINEL_TIME,
    "periodStart": SENTINEL_TIME,
    "createdBy": {"type": "user", "id": SENTINEL_TEXT},
    "secret": SENTINEL_TEXT,
    "encryptedValue": SENTINEL_TEXT,
    "meterMetaData": {"recordCount": SENTINEL_NUMBER},
}


def _holds_a_sentinel(row: dict) -> list[str]:
    found = []
    for name, value in row.items():
        text = str(value)
        if (
            SENTINEL_ID in text
            or str(SENTINEL_NUMBER) in text
            or SENTINEL_TEXT in text
            or text.startswith("2001-02-03")
        ):
            found.append(name)
    return found


def _documented_fields(schema: dict, operation: dict) -> set[str]:
    """The body's own field names (an injected name the operation documents is no unknown field)."""

    def resolve(node: Any) -> Any:
        if isinstance(node, dict) and "$ref" in node:
            return resolve(schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]])
        return node

    names: set[str] = set()
    pending = [content["schema"] for content in operation["requestBody"]["content"].values()]
    while pending:
        node = resolve(pending.pop())
        if not isinstance(node, dict):
            continue
        names |= set(node.get("properties", {}))
        pending += node.get("oneOf", []) + node.get("anyOf", []) + node.get("allOf", [])
        if "items" in node:
            pending.append(node["items"])
    return names


def test_unknown_body_fields_are_refused_or_ignored_never_stored(world):
    outcomes: dict[tuple[str, str, str], int] = {}
    schema = Client().get("/openapi.json").json()
    b_account = Account.objects.get(pk=world["b_id"])
    for (method, template), make_body in BODIES.items():
        # A write to a resource goes to B's own one, made now with the same factory.
        url = resource_url(template, FACTORIES[template](b_account)) if template in FACTORIES else template
        body = make_body(world["mine"], world["their_refs"])
        documented = _documented_fields(schema, schema["paths"][template][method])
        for name, value in INJECTED.items():
            if name in documented:
                continue
            field = {name: str(world["a_id"]) if value is None else value}
            # A list body (POST /usage/batch) carries the field in each of its items.
            injected = [{**item, **field} for item in body] if isinstance(body, list) else {**body, **field}
            before = all_account_rows()
            response = _call(world["b"], method, url, injected)
            after = all_account_rows()
            assert response.status_code < 500, (method, template, name, response.content[:300])
            for (label, pk), (owner, row) in after.items():
                if before.get((label, pk)) == (owner, row):
                    continue
                assert owner == world["b_id"], f"{method.upper()} {template} with {name!r} wrote A's {label}"
                assert _holds_a_sentinel(row) == [], (
                    f"{method.upper()} {template} stored {name!r}: {label} {row}"
                )
                assert SENTINEL_ID not in str(pk), f"{method.upper()} {template} took the id it was sent"
            outcomes[(method.upper(), template, name)] = response.status_code
        # The same body without the unknown field is accepted: the 400s above were for that field.
        plain = _call(world["b"], method, url, body)
        assert plain.status_code < 400, (method, template, plain.content[:300])
    assert len(outcomes) >= len(BODIES) * (len(INJECTED) - 2)
    # Configuration bodies refuse what they do not take. The OAuth token request ignores it (RFC 6749:
    # a server ignores parameters it does not recognise), and so do the two compatible event APIs (an
    # Amberflo or billing client's event may carry fields of newer versions), and so do updates of the
    # fields the API itself answers (read-modify-write sends a body back as read); none stores any of it.
    accepted = sorted({(method, path) for (method, path, _name), status in outcomes.items() if status < 400})
    assert accepted == [
        ("PATCH", "/meter-types/{id}"),
        ("PATCH", "/meters/{id}"),
        ("POST", "/billing/meters/usage"),
        ("POST", "/ingest"),
        ("POST", "/oauth/token"),
    ], accepted


# --- References inside bodies and configurations (issue 18, item 1) --------------------------------
# Every id or name inside a request body, a query or a stored stream configuration resolves only in
# the caller's (or the stream's) account. Each reference is listed with the test that shows it; the
# test below fails when the schema or a node type grows a reference this table does not list.
# docs/reliability.md "References inside bodies and configurations" is this table in prose.

REFS = "tests/reliability/test_tenancy_references.py::"
SWEEP = "tests/reliability/test_tenancy_sweep.py::"
FOREIGN_COLLECTOR = "tests/streams/wiring/test_foreign_collector.py::"
STREAMS_API = "tests/streams/test_api.py::"
COLLECTORS_API = "tests/collection/test_collectors_api.py::"

_METER_BODIES = REFS + "test_meter_bodies_name_meter_types_only_in_the_callers_account"
_NAMES = REFS + "test_names_are_unique_per_account_and_never_collide_with_another_accounts"
_COMPAT = REFS + "test_amberflo_and_billing_bodies_resolve_names_in_the_callers_account"
_KEYS = REFS + "test_idempotency_keys_and_unique_ids_are_scoped_per_account"
_CORRECTIONS = REFS + "test_data_correction_bodies_name_only_the_callers_corrections"
_QUERIES = REFS + "test_queries_naming_another_accounts_resources_find_nothing_of_it"
_LISTS = SWEEP + "test_lists_never_show_another_accounts_ids"

REFERENCES: dict[tuple[str, str, str], str] = {
    # request bodies: (method, path, field)
    ("post", "/meters", "meterTypeId"): _METER_BODIES,
    ("post", "/meters", "externalRef"): _METER_BODIES,
    ("post", "/meters", "meterKey"): _METER_BODIES,
    ("post", "/meters", "userId"): _METER_BODIES,
    ("post", "/meter-types", "name"): _NAMES,
    ("post", "/meter-types", "externalRef"): _NAMES,
    ("post", "/meter-types", "apiName"): _NAMES,
    ("patch", "/meter-types/{id}", "name"): _NAMES,
    ("patch", "/meter-types/{id}", "externalRef"): _NAMES,
    ("patch", "/meter-types/{id}", "apiName"): _NAMES,
    ("post", "/parameters", "name"): _NAMES,
    ("delete", "/parameters", "parameters"): SWEEP
    + "test_bodies_naming_another_accounts_resources_are_refused_and_change_nothing",
    ("post", "/online-collection/collectors", "name"): _NAMES,
    ("patch", "/online-collection/collectors/{id}", "name"): COLLECTORS_API
    + "test_duplicate_name_in_the_account_is_409_and_another_account_may_use_it",
    ("post", "/online-collection/collectors/{id}/data", "header:Idempotency-Key"): REFS
    + "test_idempotency_keys_and_unique_ids_are_scoped_per_account",
    ("post", "/streams/import", "solutionId"): STREAMS_API
    + "test_import_into_a_solution_id_the_account_does_not_have_creates_it",
    ("post", "/streams/{id}/preview", "tag"): _QUERIES,
    ("post", "/data-corrections/discard", "ids"): _CORRECTIONS,
    ("post", "/data-corrections/reprocess", "ids"): _CORRECTIONS,
    ("patch", "/data-corrections/{id}", "record"): _CORRECTIONS,
    ("post", "/meter-definition", "meterApiName"): _NAMES,
    ("post", "/meter-definition", "displayName"): _NAMES,
    ("put", "/meter-definition", "meterApiName"): _COMPAT,
    ("put", "/meter-definition", "displayName"): _COMPAT,
    ("post", "/meter-event-filtering-rules", "meterApiName"): _COMPAT,
    ("post", "/meter-event-filtering-rules", "ruleId"): _COMPAT,
    ("post", "/ingest", "meterApiName"): _COMPAT,
    ("post", "/ingest", "[].meterApiName"): _COMPAT,
    ("post", "/ingest", "values"): _COMPAT,
    ("post", "/ingest", "[].values"): _COMPAT,
    ("post", "/ingest", "customerId"): _COMPAT,
    ("post", "/ingest", "[].customerId"): _COMPAT,
    ("post", "/ingest", "uniqueId"): _KEYS,
    ("post", "/ingest", "[].uniqueId"): _KEYS,
    ("post", "/usage", "meterApiName"): _COMPAT,
    ("post", "/usage/batch", "[].meterApiName"): _COMPAT,
    ("post", "/billing/meters/usage", "meterId"): _COMPAT,
    ("post", "/billing/meters/usage", "meterName"): _COMPAT,
    ("post", "/billing/meters/usage", "customerId"): _COMPAT,
    ("post", "/billing/meters/usage", "header:Idempotency-Key"): _KEYS,
    ("post", "/billing/meters/usage", "header:x-api-idempotency-key"): _KEYS,
    # queries
    ("get", "/meters", "query:meterTypeId"): _QUERIES,
    ("get", "/meters", "query:meterKey"): _QUERIES,
    ("get", "/meters", "query:userId"): _QUERIES,
    ("get", "/meter-types", "query:name"): _QUERIES,
    ("get", "/parameters", "query:name"): _QUERIES,
    ("get", "/streams", "query:solutionId"): _QUERIES,
    ("get", "/streams", "query:name"): _QUERIES,
    ("get", "/streams", "query:resourceRefs"): _QUERIES,
    ("get", "/streams/{id}", "query:tag"): _QUERIES,
    ("get", "/streams/{id}/export", "query:tag"): _QUERIES,
    ("get", "/streams/{id}/versions", "query:resourceRefs"): _QUERIES,
    ("get", "/meter-event-filtering-rules", "query:meterApiName"): _QUERIES,
    ("get", "/billing/meters/subscriptions", "query:meterName"): _QUERIES,
    ("get", "/aggregation/stores/{id}/sessions/lookup", "query:fieldValues"): REFS
    + "test_store_ids_in_configs_resolve_in_the_streams_account",
}

# Reference-like names that name nothing of another account, and why.
NOT_REFERENCES: dict[tuple[str, str, str], str] = {
    ("post", "/oauth/token", "client_id"): "authentication: the client's own credentials (tests/accounts)",
    ("post", "/meter-types", "thresholds.[].name"): "a label inside the resource",
    ("patch", "/meter-types/{id}", "thresholds.[].name"): "a label inside the resource",
    ("patch", "/meters/{id}", "thresholds.[].name"): "a label inside the resource",
    ("post", "/meter-event-filtering-rules", "dimensionName"): "a dimension of the caller's own events",
    ("post", "/meter-event-filtering-rules", "dimensionValues"): "a dimension of the caller's own events",
    ("post", "/streams/import", "streamConfig.name"): "unique within the caller's own solution",
    ("post", "/streams/import", "streamConfig.tag"): "a version tag of the caller's own stream",
    ("post", "/streams/import", "streamConfig.nodeGroups.[].id"): "an id inside the configuration itself",
    ("post", "/streams/import", "streamConfig.nodeGroups.[].name"): "a label inside the configuration",
    ("post", "/streams/import", "streamConfig.nodeGroups.[].nodeIds"): "ids inside the configuration itself",
    ("post", "/streams/import", "streamConfig.nodes.[].id"): "an id inside the configuration itself",
    ("post", "/streams/import", "streamConfig.nodes.[].name"): "a label inside the configuration",
    (
        "get",
        "/streams/{id}/deliveries",
        "query:nodeId",
    ): "a node of the addressed (own) stream's configuration",
}

# Node configurations: (node type, config field) → the test. Stored, then resolved by the engine
# inside the stream's account.
CONFIG_REFERENCES: dict[tuple[str, str], str] = {
    ("onlineCollector", "collectorId"): FOREIGN_COLLECTOR
    + "test_a_node_naming_another_accounts_collector_behaves_as_one_naming_an_unknown_id",
    ("scriptAggregator", "storeId"): REFS + "test_store_ids_in_configs_resolve_in_the_streams_account",
    ("dataAggregator", "storeId"): REFS + "test_store_ids_in_configs_resolve_in_the_streams_account",
    ("meter", "meterKey"): REFS + "test_meter_keys_in_configs_count_only_into_the_streams_account",
    ("httpForwarder", "url"): REFS + "test_parameter_references_resolve_in_the_streams_account",
    ("httpForwarder", "headers"): REFS + "test_parameter_references_resolve_in_the_streams_account",
}

_REFERENCE_NAME = re.compile(
    r"(?i)(id|ids|key|ref|refs|name|apiname|tag|values|fieldvalues|parameters|record)$"
)


def _fields(schema: dict, node: Any, prefix: str = "", depth: int = 0) -> set[str]:
    """The dotted field paths of a request body schema (``[]`` for array items)."""
    if depth > 8:
        return set()
    if isinstance(node, dict) and "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    if not isinstance(node, dict):
        return set()
    found: set[str] = set()
    for name, child in node.get("properties", {}).items():
        found.add(prefix + name)
        found |= _fields(schema, child, f"{prefix}{name}.", depth + 1)
    for child in node.get("oneOf", []) + node.get("anyOf", []) + node.get("allOf", []):
        found |= _fields(schema, child, prefix, depth + 1)
    if "items" in node:
        found |= _fields(schema, node["items"], f"{prefix}[].", depth + 1)
    return found


# Seed 001's identity headers, declared on every authenticated operation: each names the caller's
# own account or application, and any other value is refused by the one check authentication runs
# for every operation (these tests), so they are not listed operation by operation.
IDENTITY_HEADERS = {"header:X-Account-Id", "header:X-Application-Id"}
IDENTITY_HEADER_TESTS = [
    "tests/contract/test_seed_001_usage_engine_headers.py::test_the_headers_compare_as_uuids_and_must_match_the_token",
    "tests/config/test_openapi.py::test_the_compatible_dialects_read_the_identity_headers_they_declare",
]


def _schema_references() -> set[tuple[str, str, str]]:
    schema = Client().get("/openapi.json").json()
    found = set()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            names = {
                f"{parameter['in']}:{parameter['name']}"
                for parameter in operation.get("parameters", [])
                if parameter["in"] in ("query", "header")
            } - IDENTITY_HEADERS
            if "requestBody" in operation:
                for content in operation["requestBody"]["content"].values():
                    names |= {
                        field
                        for field in _fields(schema, content["schema"])
                        if not field.startswith("streamConfig.nodes.[].config.")
                    }
            found |= {
                (method, path, name)
                for name in names
                if _REFERENCE_NAME.search(name.rsplit(".", 1)[-1].split(":")[-1])
            }
    return found


def _config_references() -> set[tuple[str, str]]:
    """Node config fields that name something outside the configuration: uuids, meter keys, and
    the strings that may hold ``{{param:…}}`` references."""
    found = set()
    for node_type in NODE_TYPES.values():
        for field in msgspec.structs.fields(node_type.config_class):
            annotation = str(field.type)
            if "UUID" in annotation or field.encode_name == "meterKey":
                found.add((node_type.name, field.encode_name))
        if hasattr(node_type.config_class, "parameter_names"):
            found |= {(node_type.name, "url"), (node_type.name, "headers")}
    return found


def _test_exists(reference: str) -> bool:
    path, _, name = reference.partition("::")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return callable(getattr(module, name, None))


def test_every_reference_in_bodies_queries_and_configurations_is_listed_with_its_test():
    schema_found = _schema_references()
    listed = set(REFERENCES) | set(NOT_REFERENCES)
    assert schema_found - listed == set(), (
        "list these references in REFERENCES (with a test) or NOT_REFERENCES"
    )
    assert listed - schema_found == set(), "these are no longer in the schema"
    assert _config_references() == set(CONFIG_REFERENCES), "list node config references in CONFIG_REFERENCES"
    tests = [
        reference
        for reference in [*REFERENCES.values(), *CONFIG_REFERENCES.values(), *IDENTITY_HEADER_TESTS]
        if "::" in reference
    ]
    assert [reference for reference in tests if not _test_exists(reference)] == []
    assert len(REFERENCES) >= 50 and len(CONFIG_REFERENCES) == 6
