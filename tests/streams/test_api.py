"""The stream-management endpoints (seed 000): shapes, options, scopes, tenancy, limits."""

import base64
import json
import re
import time

import pytest
from django.conf import settings

from streams import services
from tests.conftest import client_for
from tests.streams.conftest import ACTOR, example, minimal_config

pytestmark = pytest.mark.django_db

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STREAM_KEYS = {
    "annotation",
    "cas",
    "createdAt",
    "createdBy",
    "description",
    "edges",
    "id",
    "name",
    "nodeGroups",
    "nodes",
    "processingType",
    "schemaVersion",
    "solutionId",
    "tag",
    "updatedAt",
    "updatedBy",
}
EXPORT_KEYS = {
    "annotation",
    "description",
    "edges",
    "name",
    "nodeGroups",
    "nodes",
    "processingType",
    "schemaVersion",
    "tag",
}


def import_body(solution, config, **options):
    return {"solutionId": str(solution.pk), "streamConfig": config, **options}


def post_import(api, solution, config, **options):
    return api.post("/streams/import", import_body(solution, config, **options), format="json")


def error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    return body


# --- POST /streams/import ---------------------------------------------------------------------------


def test_import_answers_the_action_the_stream_and_the_tag(api, solution):
    config = example("api-calls-metering") | {"tag": "v1.0"}
    response = post_import(api, solution, config)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"importAction", "stream", "tag"}
    assert (body["importAction"], body["tag"]) == ("created", "v1.0")
    stream = body["stream"]
    assert set(stream) == STREAM_KEYS
    assert (stream["name"], stream["solutionId"], stream["cas"], stream["tag"]) == (
        "API calls metering",
        str(solution.pk),
        1,
        "v1.0",
    )
    assert (stream["processingType"], stream["schemaVersion"]) == ("realtime", 1)
    assert stream["createdBy"] == stream["updatedBy"] == {"type": "client", "id": api.access.client_id}
    assert TIMESTAMP.match(stream["createdAt"]) and TIMESTAMP.match(stream["updatedAt"])
    assert stream["nodes"] == example("api-calls-metering")["nodes"]


def test_import_conflict_strategies_over_http(api, solution):
    post_import(api, solution, minimal_config("Same"))
    assert error(post_import(api, solution, minimal_config("Same")), 409, "STREAM_NAME_EXISTS")
    skipped = post_import(
        api, solution, minimal_config("Same", description="new"), onNameConflict="skip"
    ).json()
    assert (skipped["importAction"], skipped["stream"]["description"], skipped["stream"]["cas"]) == (
        "skipped",
        "",
        1,
    )
    overwritten = post_import(
        api, solution, minimal_config("Same", description="new"), onNameConflict="overwrite"
    ).json()
    assert (
        overwritten["importAction"],
        overwritten["stream"]["description"],
        overwritten["stream"]["cas"],
    ) == ("overwritten", "new", 2)
    copied = post_import(api, solution, minimal_config("Same"), onNameConflict="create-new").json()
    assert (copied["importAction"], copied["stream"]["name"]) == ("created", "Same (Copy)")
    assert copied["stream"]["nodes"][1]["config"]["meterKey"] != "count-key"


def test_import_node_deletion_refused_then_allowed(api, solution):
    config = minimal_config("S")
    config["nodes"].append({"id": "peek", "name": "Peek", "type": "inspect", "config": {}})
    post_import(api, solution, config)
    body = error(
        post_import(api, solution, minimal_config("S"), onNameConflict="overwrite"),
        409,
        "NODE_DELETION_NOT_ALLOWED",
    )
    assert body["details"] == [{"field": "nodes", "message": "Node 'peek' would be deleted."}]
    allowed = post_import(
        api, solution, minimal_config("S"), onNameConflict="overwrite", allowNodeDeletion=True
    )
    assert [n["id"] for n in allowed.json()["stream"]["nodes"]] == ["in", "count"]


@pytest.mark.parametrize(
    "config,field",
    [
        (
            {
                "name": "S",
                "nodes": [
                    {"id": "a", "name": "A", "type": "inspect"},
                    {"id": "a", "name": "B", "type": "inspect"},
                ],
            },
            "nodes[1].id",
        ),
        (
            {
                "name": "S",
                "nodes": [{"id": "a", "name": "A", "type": "inspect"}],
                "edges": [{"source": "a", "target": "nowhere"}],
            },
            "edges[0].target",
        ),
        (
            {
                "name": "S",
                "nodes": [
                    {"id": "a", "name": "A", "type": "inspect"},
                    {"id": "b", "name": "B", "type": "inspect"},
                ],
                "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
            },
            "edges",
        ),
        (
            {
                "name": "S",
                "nodes": [
                    {"id": "a", "name": "A", "type": "inspect"},
                    {"id": "m", "name": "M", "type": "meter", "config": {"meterKey": "k" * 37}},
                ],
            },
            "nodes[1].config.meterKey",
        ),
        (
            {
                "name": "S",
                "nodes": [{"id": "s", "name": "S", "type": "script", "config": {"expression": "1 +"}}],
            },
            "nodes[0].config.expression",
        ),
    ],
)
def test_import_validation_errors_point_at_the_problem(api, solution, config, field):
    body = error(post_import(api, solution, config), 400, "VALIDATION_ERROR")
    assert [detail["field"] for detail in body["details"]] == [field]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"streamConfig": {"name": "S", "nodes": []}}, "solutionId"),
        ({"solutionId": "x" * 37, "streamConfig": {"name": "S", "nodes": []}}, "solutionId"),
        ({"solutionId": "s"}, "streamConfig"),
        ({"solutionId": "s", "streamConfig": []}, "streamConfig"),
        ({"solutionId": "s", "streamConfig": {}, "onNameConflict": "merge"}, "onNameConflict"),
        ({"solutionId": "s", "streamConfig": {}, "allowNodeDeletion": "maybe"}, "allowNodeDeletion"),
        ({"solutionId": "s", "streamConfig": {}, "accountId": "x"}, "accountId"),
    ],
)
def test_import_body_validation(api, body, field):
    response = api.post("/streams/import", body, format="json")
    assert field in [detail["field"] for detail in error(response, 400, "VALIDATION_ERROR")["details"]]


def test_import_into_a_solution_id_the_account_does_not_have_creates_it(api, other_api):
    """An API client imports without creating anything first (issue 21): the seed's own sample id
    works, for one account and, independently, the same id is then another account's — 404."""
    seed_id = "73253be8-0c7c-4670-9631-5a29fe59b4d2"
    response = api.post(
        "/streams/import", {"solutionId": seed_id, "streamConfig": minimal_config()}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["importAction"], body["stream"]["solutionId"]) == ("created", seed_id)
    listed = api.get("/streams", {"solutionId": seed_id}).json()["streams"]
    assert [stream["id"] for stream in listed] == [body["stream"]["id"]]
    again = api.post(
        "/streams/import", {"solutionId": seed_id, "streamConfig": minimal_config("Second")}, format="json"
    )
    assert again.json()["stream"]["solutionId"] == seed_id
    # Another account naming that id reaches nothing of it: 404, no stream, no solution of its own.
    refused = other_api.post(
        "/streams/import", {"solutionId": seed_id, "streamConfig": minimal_config("Theirs")}, format="json"
    )
    error(refused, 404, "SOLUTION_NOT_FOUND")
    assert other_api.get("/streams").json()["streams"] == []
    assert len(api.get("/streams", {"solutionId": seed_id}).json()["streams"]) == 2
    assert other_api.get("/streams", {"solutionId": seed_id}).json()["streams"] == []


def test_import_into_a_foreign_solution_is_404_and_changes_nothing(api, foreign_solution):
    response = api.post(
        "/streams/import",
        {"solutionId": str(foreign_solution.pk), "streamConfig": minimal_config()},
        format="json",
    )
    error(response, 404, "SOLUTION_NOT_FOUND")
    assert foreign_solution.streams.count() == 0
    foreign_solution.refresh_from_db()
    assert foreign_solution.name == "Theirs"


def test_import_with_an_existing_tag_is_409(api, solution):
    post_import(api, solution, minimal_config("S", tag="v1"))
    error(
        post_import(api, solution, minimal_config("S", tag="v1"), onNameConflict="overwrite"),
        409,
        "STREAM_TAG_EXISTS",
    )


def test_import_needs_the_write_scope(account, solution):
    reader = client_for(account, scopes=["stream-management:read:streams"], name="reader")
    body = error(post_import(reader, solution, minimal_config()), 403, "INSUFFICIENT_SCOPE")
    assert "stream-management:write:streams" in body["message"]
    writer = client_for(account, scopes=["stream-management:write:streams"], name="writer")
    stream_id = post_import(writer, solution, minimal_config()).json()["stream"]["id"]
    error(writer.get(f"/streams/{stream_id}"), 403, "INSUFFICIENT_SCOPE")
    assert reader.get(f"/streams/{stream_id}").status_code == 200


def test_seed_001_style_unprefixed_scopes_work_too(account, solution):
    client = client_for(account, scopes=["write:streams", "read:streams"], name="old")
    assert post_import(client, solution, minimal_config()).status_code == 200
    assert client.get("/streams").status_code == 200


def test_no_token_is_401(client):
    error(client.get("/streams"), 401, "UNAUTHORIZED")


# --- GET /streams/{id} ----------------------------------------------------------------------------------


@pytest.fixture
def stream(account, solution):
    services.stream_import(
        account=account,
        solution_id=solution.pk,
        stream_config=example("api-calls-metering") | {"tag": "v1"},
        actor=ACTOR,
    )
    config = example("api-calls-metering") | {"description": "second", "tag": "v2"}
    return services.stream_import(
        account=account,
        solution_id=solution.pk,
        stream_config=config,
        on_name_conflict="overwrite",
        actor=ACTOR,
    ).stream


def test_get_stream(api, stream):
    body = api.get(f"/streams/{stream.pk}").json()
    assert set(body) == STREAM_KEYS
    assert (body["id"], body["description"], body["cas"], body["tag"]) == (str(stream.pk), "second", 2, "v2")
    assert body["createdBy"] == ACTOR


def test_get_stream_by_tag_is_that_version(api, stream):
    body = api.get(f"/streams/{stream.pk}?tag=v1").json()
    assert (body["id"], body["description"], body["cas"], body["tag"]) == (
        str(stream.pk),
        "Counts API calls per customer and plan from an online collector, forwarding every flushed period.",
        1,
        "v1",
    )
    error(api.get(f"/streams/{stream.pk}?tag=v9"), 404, "STREAM_VERSION_NOT_FOUND")


def test_get_stream_fields_with_dot_notation(api, stream):
    body = api.get(f"/streams/{stream.pk}?fields=name,nodes.name,nodes.config.meterKey,createdBy.id").json()
    assert body == {
        "name": "API calls metering",
        "nodes": [
            {"name": "API gateway events", "config": {}},
            {"name": "Billable calls only", "config": {}},
            {"name": "Shape record", "config": {}},
            {"name": "Drop retries", "config": {}},
            {"name": "API calls", "config": {"meterKey": "api-calls"}},
            {"name": "Send to billing", "config": {}},
            {"name": "Last records", "config": {}},
        ],
        "createdBy": {"id": "test-client"},
    }
    assert api.get(f"/streams/{stream.pk}?fields=tag,nodes,nodes.name").json() == {
        "tag": "v2",
        "nodes": stream.nodes,
    }
    body = error(api.get(f"/streams/{stream.pk}?fields=name,secret"), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "fields"
    error(api.get(f"/streams/{stream.pk}?fields=nodes..name"), 400, "VALIDATION_ERROR")


def test_tenancy_another_accounts_stream_is_404_everywhere(other_api, stream):
    for path in (f"/streams/{stream.pk}", f"/streams/{stream.pk}/export", f"/streams/{stream.pk}/versions"):
        error(other_api.get(path), 404, "STREAM_NOT_FOUND")
    assert other_api.get("/streams").json() == {"streams": []}
    error(other_api.get("/streams/not-a-uuid"), 404, "STREAM_NOT_FOUND")


# --- GET /streams/{id}/export ---------------------------------------------------------------------------


def test_export_is_the_config_without_ids_or_server_fields(api, stream):
    body = api.get(f"/streams/{stream.pk}/export").json()
    assert set(body) == EXPORT_KEYS
    assert body == example("api-calls-metering") | {"description": "second", "tag": "v2"}
    assert api.get(f"/streams/{stream.pk}/export?tag=v1").json()["description"].startswith("Counts API calls")
    error(api.get(f"/streams/{stream.pk}/export?tag=nope"), 404, "STREAM_VERSION_NOT_FOUND")


def test_export_then_import_into_another_solution_round_trips(api, stream, second_solution):
    exported = api.get(f"/streams/{stream.pk}/export").json()
    response = post_import(api, second_solution, exported)
    assert response.json()["importAction"] == "created"
    copy = response.json()["stream"]
    assert (copy["solutionId"], copy["cas"], copy["tag"]) == (str(second_solution.pk), 1, "v2")
    assert copy["id"] != str(stream.pk)
    assert api.get(f"/streams/{copy['id']}/export").json() == exported


def test_export_of_another_account_imported_here(api, other_api, other_account, solution):
    theirs = services.solution_create(account=other_account, name="Theirs")
    created = post_import(other_api, theirs, example("daily-storage-batch")).json()["stream"]
    exported = other_api.get(f"/streams/{created['id']}/export").json()
    mine = post_import(api, solution, exported).json()["stream"]
    assert mine["nodes"] == created["nodes"] and mine["solutionId"] == str(solution.pk)


# --- GET /streams ---------------------------------------------------------------------------------------


def make_streams(account, solution, count, prefix="S"):
    return [
        services.stream_import(
            account=account,
            solution_id=solution.pk,
            actor=ACTOR,
            stream_config=minimal_config(f"{prefix}{index:02d}"),
        ).stream
        for index in range(count)
    ]


def test_list_is_oldest_first_with_an_opaque_cursor_stable_across_inserts(api, account, solution):
    make_streams(account, solution, 5)
    first = api.get("/streams?limit=2&fields=name").json()
    assert first["streams"] == [{"name": "S00"}, {"name": "S01"}]
    cursor = first["nextCursor"]
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert set(decoded) == {"createdAt", "id"}
    make_streams(account, solution, 2, prefix="New")  # created while paging: they go to the end
    second = api.get(f"/streams?limit=2&fields=name&cursor={cursor}").json()
    assert second["streams"] == [{"name": "S02"}, {"name": "S03"}]
    third = api.get(f"/streams?limit=2&fields=name&cursor={second['nextCursor']}").json()
    assert third["streams"] == [{"name": "S04"}, {"name": "New00"}]
    last = api.get(f"/streams?limit=2&fields=name&cursor={third['nextCursor']}").json()
    assert last == {"streams": [{"name": "New01"}]}


def test_list_has_no_next_cursor_when_the_page_is_the_last(api, account, solution):
    make_streams(account, solution, 2)
    assert "nextCursor" not in api.get("/streams?limit=2").json()
    assert len(api.get("/streams").json()["streams"]) == 2


def test_list_streams_are_full_objects_without_fields(api, stream):
    streams = api.get("/streams").json()["streams"]
    assert len(streams) == 1 and set(streams[0]) == STREAM_KEYS


def test_list_filters_by_solution_and_exact_case_sensitive_name(api, account, solution, second_solution):
    make_streams(account, solution, 2)
    services.stream_import(
        account=account, solution_id=second_solution.pk, actor=ACTOR, stream_config=minimal_config("S00")
    )
    by_solution = api.get(f"/streams?solutionId={second_solution.pk}&fields=name,solutionId").json()
    assert by_solution == {"streams": [{"name": "S00", "solutionId": str(second_solution.pk)}]}
    assert [s["solutionId"] for s in api.get("/streams?name=S00&fields=solutionId").json()["streams"]] == [
        str(solution.pk),
        str(second_solution.pk),
    ]
    assert api.get("/streams?name=s00").json() == {"streams": []}
    assert api.get("/streams?name=S0").json() == {"streams": []}
    error(api.get("/streams?solutionId=nope"), 400, "VALIDATION_ERROR")


def test_list_filters_by_resource_refs_ored_with_star(api, account, solution):
    for name in ("api-calls-metering", "session-metering", "daily-storage-batch"):
        services.stream_import(
            account=account, solution_id=solution.pk, actor=ACTOR, stream_config=example(name)
        )

    def names(query):
        return [s["name"] for s in api.get(f"/streams?fields=name&{query}").json()["streams"]]

    assert names("resourceRefs=meterKey:api-calls") == ["API calls metering"]
    assert names("resourceRefs=meterKey:*") == ["API calls metering", "Charging sessions", "Daily storage"]
    assert names("resourceRefs=scriptAggregationStore:*") == ["Charging sessions"]
    assert names("resourceRefs=dataAggregationStore:d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09") == [
        "Daily storage"
    ]
    assert names(
        "resourceRefs=onlineCollector:8a76066d-ff29-417c-a18e-abde22e44310"
        "&resourceRefs=scriptAggregationStore:*"
    ) == ["API calls metering", "Charging sessions"]
    assert names("resourceRefs=meterKey:storage-gb,meterKey:api-calls") == [
        "API calls metering",
        "Daily storage",
    ]
    assert names("resourceRefs=meterKey:nothing") == []
    assert len(names("resourceRefs=")) == 3


@pytest.mark.parametrize("ref", ["meterKey", "meterKey:", "collector:abc", ":abc"])
def test_malformed_resource_refs_are_400(api, ref):
    body = error(api.get(f"/streams?resourceRefs={ref}"), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "resourceRefs"


@pytest.mark.parametrize(
    "query,field",
    [("limit=101", "limit"), ("limit=0", "limit"), ("cursor=%%%", "cursor"), ("cursor=eyJhIjoxfQ", "cursor")],
)
def test_list_paging_validation(api, query, field):
    assert error(api.get(f"/streams?{query}"), 400, "VALIDATION_ERROR")["details"][0]["field"] == field


def test_list_limit_100(api, account, solution):
    make_streams(account, solution, 3)
    assert len(api.get("/streams?limit=100").json()["streams"]) == 3


# --- GET /streams/{id}/versions -------------------------------------------------------------------------


def test_versions_newest_first_with_total_skip_and_limit(api, account, solution):
    for index, tag in enumerate(["v1", "v2", "v3"]):
        config = minimal_config("S", description=f"d{index}", tag=tag)
        stream = services.stream_import(
            account=account,
            solution_id=solution.pk,
            stream_config=config,
            on_name_conflict="overwrite",
            actor=ACTOR,
        ).stream
    body = api.get(f"/streams/{stream.pk}/versions").json()
    assert set(body) == {"total", "versions"}
    assert body["total"] == 3
    assert [(v["tag"], v["cas"], v["description"]) for v in body["versions"]] == [
        ("v3", 3, "d2"),
        ("v2", 2, "d1"),
        ("v1", 1, "d0"),
    ]
    assert set(body["versions"][0]) == STREAM_KEYS
    assert all(v["id"] == str(stream.pk) for v in body["versions"])
    page = api.get(f"/streams/{stream.pk}/versions?skip=1&limit=1").json()
    assert (page["total"], [v["tag"] for v in page["versions"]]) == (3, ["v2"])
    error(api.get(f"/streams/{stream.pk}/versions?limit=101"), 400, "VALIDATION_ERROR")


def test_versions_filtered_by_resource_refs(api, account, solution):
    services.stream_import(
        account=account, solution_id=solution.pk, actor=ACTOR, stream_config=minimal_config("S", tag="v1")
    )
    config = minimal_config("S", tag="v2")
    config["nodes"].append(
        {
            "id": "agg",
            "name": "Agg",
            "type": "dataAggregator",
            "config": {
                "storeId": "d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09",
                "keyFields": ["k"],
                "aggregations": [{"target": "n", "function": "count"}],
            },
        }
    )
    stream = services.stream_import(
        account=account,
        solution_id=solution.pk,
        stream_config=config,
        on_name_conflict="overwrite",
        actor=ACTOR,
    ).stream

    def tags(query):
        body = api.get(f"/streams/{stream.pk}/versions?{query}").json()
        return body["total"], [v["tag"] for v in body["versions"]]

    assert tags("resourceRefs=dataAggregationStore:*") == (1, ["v2"])
    assert tags("resourceRefs=meterKey:count-key") == (2, ["v2", "v1"])
    assert tags("resourceRefs=scriptAggregationStore:*&resourceRefs=dataAggregationStore:*") == (1, ["v2"])
    assert tags("resourceRefs=onlineCollector:00000000-0000-0000-0000-000000000000") == (0, [])
    error(api.get(f"/streams/{stream.pk}/versions?resourceRefs=bogus:*"), 400, "VALIDATION_ERROR")


# --- Limits and documentation -------------------------------------------------------------------------


def test_streams_rate_limit_is_20_per_second_burst_5(api, stream, rate_limits):
    assert settings.RATE_LIMITS["streams"] == (20, 1, 5)
    # Until the first 429: never more than the burst plus what 20/s refilled meanwhile (a slow,
    # loaded machine refills a token every 50 ms, so the count is bounded, not exact).
    started = time.monotonic()
    statuses = []
    while not statuses or (statuses[-1] == 200 and len(statuses) < 200):
        statuses.append(api.get(f"/streams/{stream.pk}").status_code)
    elapsed = time.monotonic() - started
    assert statuses[-1] == 429
    assert 5 <= statuses.count(200) <= 5 + 20 * elapsed + 1
    limited = api.get("/streams")
    error(limited, 429, "TOO_MANY_REQUESTS")
    assert limited["RateLimit-Limit"] == "5"


def test_openapi_documents_every_stream_endpoint_and_status(client):
    schema = client.get("/openapi.json").json()
    expected = {
        ("/streams", "get"): {"200", "400", "401", "403", "429", "500", "503"},
        ("/streams/{id}", "get"): {"200", "400", "401", "403", "404", "429", "500", "503"},
        ("/streams/{id}/export", "get"): {"200", "400", "401", "403", "404", "429", "500", "503"},
        ("/streams/{id}/versions", "get"): {"200", "400", "401", "403", "404", "429", "500", "503"},
        ("/streams/import", "post"): {"200", "400", "401", "403", "404", "409", "413", "429", "500", "503"},
    }
    for (path, method), statuses in expected.items():
        operation = schema["paths"][path][method]
        assert statuses <= set(operation["responses"]), (path, method)
    list_parameters = {p["name"] for p in schema["paths"]["/streams"]["get"]["parameters"]}
    assert {"solutionId", "fields", "name", "resourceRefs", "cursor", "limit"} <= list_parameters
    request = schema["paths"]["/streams/import"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert request["$ref"].endswith("/StreamImportRequest")
