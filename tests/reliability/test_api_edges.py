"""The defects schemathesis found at the edges of the API conventions, each pinned by a test.

Before the fixes: ``skip`` past a 64-bit OFFSET, a null character in a query or path, and a null
character or lone surrogate inside a JSON body stored in jsonb were all 500s; OPTIONS was a 403;
an unsupported method on a plain APIView was a 403; ``Accept: text/html`` was a 406 and
``?format=xml`` a 404; and several query parameters took values the schema does not allow.
"""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from accounts import services as account_services
from config.api.pagination import MAX_SKIP
from config.api.schema import NOT_BLANK_PATTERN, WHITESPACE_CLASS
from metering import periods
from metering import services as metering_services
from metering.ledger import UsageInput, usage_apply
from metering.models import DataCorrection
from parameters.models import Parameter
from streams import services as stream_services
from streams.models import Stream
from tests.conftest import client_for
from tests.streams.engine.conftest import chain

pytestmark = pytest.mark.django_db

NULL_MESSAGE = "Null characters are not allowed."
SURROGATE_MESSAGE = "Strings must be valid Unicode (no lone surrogates)."


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code, body
    return body


def test_skip_beyond_the_database_offset_is_a_400_not_a_500(api):
    body = error(api.get("/parameters?skip=116050144347482841153536"), 400, "VALIDATION_ERROR")
    assert body["details"] == [{"field": "skip", "message": f"skip must be between 0 and {MAX_SKIP}."}]
    error(api.get("/parameters?skip=" + "9" * 5000), 400, "VALIDATION_ERROR")  # beyond int()'s digit limit
    assert api.get(f"/parameters?skip={MAX_SKIP}").json() == {"parameters": []}


@pytest.mark.parametrize(
    "query,field",
    [
        ("limit=1_0", "limit"),
        ("limit=%207", "limit"),
        ("limit=%D9%A3", "limit"),
        ("limit=", "limit"),
        ("skip=", "skip"),
        ("skip=-1", "skip"),
        ("sortOrder=desc", "sortOrder"),
        ("sortOrder=", "sortOrder"),
        ("sortBy=", "sortBy"),
    ],
)
def test_paging_parameters_take_exactly_what_the_schema_says(api, query, field):
    body = error(api.get(f"/notification-endpoints?{query}"), 400, "VALIDATION_ERROR")
    assert [detail["field"] for detail in body["details"]] == [field]


def test_paging_parameters_within_the_schema_are_accepted(api):
    for query in ("limit=1", "limit=100", "skip=0", "sortOrder=DESC", "sortBy=updatedAt&sortOrder=ASC"):
        assert api.get(f"/notification-endpoints?{query}").status_code == 200, query


@pytest.mark.parametrize(
    "url,field",
    [
        ("/parameters?name=%00", "name"),
        ("/parameters?name=a&sortBy=name%00", "sortBy"),
        ("/parameters/a%00b", "path"),
        ("/streams?name=x%00", "name"),
        (
            "/aggregation/stores/0f0e0d0c-0b0a-4908-8706-050403020100/sessions/lookup?fieldValues=%00",
            "fieldValues",
        ),
    ],
)
def test_a_null_character_in_a_query_or_path_is_a_400_not_a_500(api, url, field):
    body = error(api.get(url), 400, "VALIDATION_ERROR")
    assert body["details"] == [{"field": field, "message": NULL_MESSAGE}]


def test_an_encoded_percent_sign_is_not_a_null_character(api):
    assert api.get("/parameters?name=%2500").json() == {"parameters": []}


@pytest.mark.parametrize("value,message", [("a\u0000b", NULL_MESSAGE), ("\ud800", SURROGATE_MESSAGE)])
def test_json_strings_postgresql_cannot_store_are_a_400_not_a_500(api, account, value, message):
    solution = stream_services.solution_create(account=account, name="Edges")
    config = chain(name="Edges")
    config["annotation"] = {"note": value}
    raw = json.dumps(
        {"solutionId": str(solution.pk), "streamConfig": config}
    )  # \\u escapes, as a client sends
    body = error(api.post("/streams/import", raw, content_type="application/json"), 400, "VALIDATION_ERROR")
    assert body["details"] == [{"field": "streamConfig.annotation.note", "message": message}]
    # In keys too, wherever they are: the parser refuses them before any view sees the body.
    keyed = json.dumps({"name": "a", "type": "standard", "value": "v", "labels": [{value: 1}]})
    body = error(api.post("/parameters", keyed, content_type="application/json"), 400, "VALIDATION_ERROR")
    assert body["details"] == [{"field": f"labels[0].{value}", "message": message}]
    assert (Stream.objects.count(), Parameter.objects.count()) == (0, 0)


def test_deep_values_below_the_nesting_limit_are_still_accepted():
    from config.api.parsers import MAX_JSON_DEPTH, decode_json

    deepest = json.dumps(json.loads("[" * (MAX_JSON_DEPTH - 1) + '1, "x"' + "]" * (MAX_JSON_DEPTH - 1)))
    assert decode_json(deepest.encode())


def test_options_answers_the_resource_methods_with_any_valid_token(account):
    narrow = client_for(account, scopes=["meter-report"], name="narrow")
    response = narrow.options("/parameters")
    assert response.status_code == 200
    assert response["Allow"] == "GET, POST, DELETE, HEAD, OPTIONS"
    assert response.json() == {"allowedMethods": ["GET", "POST", "DELETE", "HEAD", "OPTIONS"]}
    assert narrow.options("/aggregation/stores/x/sessions/lookup").json() == {
        "allowedMethods": ["GET", "HEAD", "OPTIONS"]
    }
    error(Client().options("/parameters"), 401, "UNAUTHORIZED")


def test_a_method_an_api_view_does_not_have_is_405_with_allow(api):
    response = api.put("/aggregation/stores/0f0e0d0c-0b0a-4908-8706-050403020100/sessions/lookup")
    error(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "GET, HEAD, OPTIONS"


def test_the_api_answers_json_whatever_the_accept_header_or_format_asks(api):
    for response in (
        api.get("/parameters", HTTP_ACCEPT="text/html"),
        api.get("/parameters?format=xml"),
        api.get("/parameters", HTTP_ACCEPT="application/xml"),
    ):
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"parameters": []}
    error(api.get("/parameters/missing", HTTP_ACCEPT="text/html"), 404, "PARAMETER_NOT_FOUND")


@pytest.mark.parametrize(
    "query,field",
    [
        ("solutionId=", "solutionId"),
        ("fields=name,%20nodes", "fields"),
        ("fields=name,", "fields"),
        ("fields=nodes.na%20me", "fields"),
        ("resourceRefs=meterKey:a,%20meterKey:b", "resourceRefs"),
        ("resourceRefs=meterKey:", "resourceRefs"),
        ("resourceRefs=meterKey:a,", "resourceRefs"),
    ],
)
def test_stream_list_filters_take_exactly_what_the_schema_says(api, query, field):
    body = error(api.get(f"/streams?{query}"), 400, "VALIDATION_ERROR")
    assert [detail["field"] for detail in body["details"]] == [field]


def test_stream_list_filters_within_the_schema_are_accepted(api):
    for query in (
        "fields=",
        "fields=name,nodes.config.meterKey",
        "resourceRefs=",
        "resourceRefs=meterKey:*",
        "resourceRefs=meterKey:a,onlineCollector:b",
        "cursor=",
        "name=",
    ):
        assert api.get(f"/streams?{query}").status_code == 200, query


def test_the_schema_describes_what_the_api_answers_and_takes(client):
    schema = client.get("/openapi.json").json()
    paths, components = schema["paths"], schema["components"]["schemas"]
    # Lists are objects wrapping an array, as the API answers them (they were documented as arrays).
    listed = paths["/parameters"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed == {"$ref": "#/components/schemas/ParameterList"}
    assert components["ParameterList"]["properties"]["parameters"]["type"] == "array"
    # Strict bodies say so; a PATCH that needs one of two fields says that too, and needs a body.
    assert components["ParameterCreateRequest"]["additionalProperties"] is False
    update = paths["/parameters/{name}"]["patch"]["requestBody"]
    assert update["required"] is True
    assert components["PatchedParameterUpdateRequest"]["anyOf"] == [
        {"required": ["description"]},
        {"required": ["value"]},
    ]
    # Paging bounds as config.api.pagination checks them.
    limit = next(p for p in paths["/notification-endpoints"]["get"]["parameters"] if p["name"] == "limit")
    skip = next(p for p in paths["/notification-endpoints"]["get"]["parameters"] if p["name"] == "skip")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert skip["schema"] == {"type": "integer", "minimum": 0, "maximum": MAX_SKIP}
    # 429 and 503 say their Retry-After.
    assert paths["/streams"]["get"]["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    assert paths["/streams"]["get"]["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    assert {
        paths["/parameters"]["get"]["operationId"],
        paths["/parameters/{name}"]["get"]["operationId"],
    } == {"parameters_list", "parameters_retrieve"}
    # GET /streams?fields=cas answers {"cas": 1} per stream: the projected stream requires no field.
    projected = components["StreamProjection"]
    assert "required" not in projected and "required" not in projected["properties"]["nodes"]["items"]
    assert components["Stream"]["required"][:3] == ["annotation", "cas", "createdAt"]


def test_a_projected_stream_answers_only_the_fields_asked_for(api, account):
    solution = stream_services.solution_create(account=account, name="Projection")
    stream_services.stream_import(
        account=account,
        solution_id=str(solution.pk),
        stream_config=chain(name="P"),
        actor={"type": "client", "id": "edges"},
    )
    assert api.get("/streams?fields=cas,nodes.name").json() == {
        "streams": [{"cas": 1, "nodes": [{"name": "In"}]}]
    }


def test_the_compatible_endpoints_take_a_token_or_an_api_key_not_both():
    """Two security requirements (either one), not one naming both (which would require both headers)."""
    schema = Client().get("/openapi.json").json()
    for path in ("/ingest", "/usage", "/meter-definition", "/billing/meters/usage"):
        requirements = schema["paths"][path]["post"]["security"]
        assert requirements[-1] == {"ApiKey": []}, path
        assert all(set(requirement) == {"OAuth2"} for requirement in requirements[:-1]), path
    assert all(
        set(requirement) == {"OAuth2"} for requirement in schema["paths"]["/meters"]["get"]["security"]
    )


def test_data_corrections_refuse_an_empty_enum_filter_and_take_blank_ids_as_unknown(api):
    assert api.get("/data-corrections?status=").status_code == 400
    assert (
        error(api.get("/data-corrections?reason="), 400, "VALIDATION_ERROR")["details"][0]["field"]
        == "reason"
    )
    # An id of whitespace is an id nobody has (schema: any string of 1 to 36), not a blank field.
    response = api.post("/data-corrections/discard", {"ids": ["\t\u0085"]}, format="json")
    assert error(response, 404, "DATA_CORRECTION_NOT_FOUND")["details"][0]["field"] == "ids"


def test_collectors_refuse_a_name_that_is_not_a_string(api):
    body = error(
        api.post("/online-collection/collectors", {"name": 0}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert body["details"][0]["field"] == "name"
    schema = Client().get("/openapi.json").json()["components"]["schemas"]["SendDataRequestRequest"]
    assert schema["properties"]["data"]["oneOf"] == [
        {"type": "string"},
        {"type": "object"},
        {"type": "array"},
    ]


# --- the operations that were excluded from the fuzzer, each made to agree with its schema -------------


def _components() -> dict:
    return Client().get("/openapi.json").json()["components"]["schemas"]


def test_an_invalid_api_key_is_refused_even_next_to_a_valid_token(api, account, other_account):
    _, key = account_services.api_key_create(account=account, name="edges")
    _, theirs = account_services.api_key_create(account=other_account, name="theirs")

    error(api.get("/meter-definition", HTTP_X_API_KEY="mk_unknown"), 401, "INVALID_API_KEY")
    error(api.get("/meter-definition/x", HTTP_X_API_KEY=""), 401, "INVALID_API_KEY")
    error(api.post("/ingest", [], format="json", HTTP_X_API_KEY="mk_unknown"), 401, "INVALID_API_KEY")
    error(api.get("/meter-definition", HTTP_X_API_KEY=theirs), 401, "CREDENTIALS_MISMATCH")
    assert api.get("/meter-definition", HTTP_X_API_KEY=key).status_code == 200
    # Endpoints that take no API key ignore the header, as their schema says.
    assert api.get("/meter-types", HTTP_X_API_KEY="mk_unknown").status_code == 200


def test_strict_bodies_refuse_values_of_another_json_type(api, account):
    define_body = {"meterApiName": "calls", "displayName": "Calls", "type": "SUM_OF_ALL_USAGE"}
    assert api.post("/meter-definition", define_body, format="json").status_code == 200
    for change, field in (
        ({"label": 0}, "label"),
        ({"meterTimeInMillis": "5"}, "meterTimeInMillis"),
        ({"displayName": 5}, "displayName"),
        ({"dimensions": [1]}, "dimensions"),
    ):
        response = api.put("/meter-definition", {"meterApiName": "calls", **change}, format="json")
        assert error(response, 400, "VALIDATION_ERROR")["details"][0]["field"] == field, change
    meter_type = {
        "name": "Strict",
        "unit": "u",
        "aggregation": {"type": "SUM"},
        "resetSchedule": {"cron": "0 0 1 * *"},
        "timezone": "Etc/UTC",
    }
    for change, field in (
        ({"capacity": "100"}, "capacity"),
        ({"unit": 7}, "unit"),
        ({"resetSchedule": {"cron": 5}}, "resetSchedule.cron"),
    ):
        response = api.post("/meter-types", {**meter_type, **change}, format="json")
        assert error(response, 400, "VALIDATION_ERROR")["details"] == [
            {"field": field, "message": "Must be a number." if field == "capacity" else "Must be a string."}
        ]
    assert api.post("/meter-types", {**meter_type, "capacity": 100}, format="json").status_code == 201


def test_meter_definition_dimensions_are_distinct_and_say_so(api):
    body = {
        "meterApiName": "calls",
        "displayName": "Calls",
        "type": "SUM_OF_ALL_USAGE",
        "dimensions": ["0", "0"],
    }
    assert error(api.post("/meter-definition", body, format="json"), 400, "VALIDATION_ERROR")["details"] == [
        {"field": "dimensions", "message": "Dimensions must be distinct."}
    ]
    dimensions = _components()["MeterDefinitionRequestRequest"]["properties"]["dimensions"]
    assert (dimensions["uniqueItems"], dimensions["maxItems"], dimensions["items"]["maxLength"]) == (
        True,
        20,
        100,
    )


def test_a_meter_definition_type_cannot_change_to_any_other_type(api):
    api.post(
        "/meter-definition",
        {"meterApiName": "calls", "displayName": "Calls", "type": "SUM_OF_ALL_USAGE"},
        format="json",
    )
    for kind in ("MIN_IN_PERIOD", "MAX_IN_PERIOD"):
        response = api.put("/meter-definition", {"meterApiName": "calls", "type": kind}, format="json")
        error(response, 400, "AGGREGATION_IMMUTABLE")


def test_meter_type_timezone_and_cron_are_documented_as_checked(api):
    components = _components()
    assert "Europe/Stockholm" in components["TimezoneEnum"]["enum"]
    cron = components["ResetScheduleRequest"]["properties"]["cron"]
    assert cron["pattern"] == periods.CRON_PATTERN
    body = {"name": "Sched", "unit": "u", "aggregation": {"type": "SUM"}, "timezone": "Etc/UTC"}
    for refused in ("0 0 L W *", "0 0 * * 1#2", "0 0 ? * *", "0 0 1-32 * *", "10-5/0 * * * *"):
        response = api.post("/meter-types", {**body, "resetSchedule": {"cron": refused}}, format="json")
        assert error(response, 400, "VALIDATION_ERROR")["details"][0]["field"] == "resetSchedule.cron", (
            refused
        )
        assert not re.fullmatch(cron["pattern"], refused)


def test_list_meters_refuses_an_empty_meter_type_id(api):
    assert (
        error(api.get("/meters?meterTypeId="), 400, "VALIDATION_ERROR")["details"][0]["field"]
        == "meterTypeId"
    )


def test_create_meter_documents_meter_type_id_or_external_ref_not_both():
    assert _components()["MeterCreateRequest"]["oneOf"] == [
        {"required": ["meterTypeId"]},
        {"required": ["externalRef"]},
    ]


def test_patch_bodies_validated_whole_are_documented_with_their_required_fields(api, account):
    paths = Client().get("/openapi.json").json()["paths"]
    for path, component, field in (
        ("/data-corrections/{id}", "DataCorrectionUpdateRequest", "record"),
        ("/online-collection/collectors/{id}", "CollectorWriteRequest", "name"),
    ):
        request = paths[path]["patch"]["requestBody"]
        assert request["required"] is True
        assert request["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{component}"
        }
        assert _components()[component]["required"] == [field]
    refused = usage_apply(
        account_id=account.pk,
        source="api",
        records=[UsageInput(user_id=None, value=1, meter_api_name="nothing")],
    )
    correction = refused.results[0].correction_id
    assert (
        error(api.patch(f"/data-corrections/{correction}", {}, format="json"), 400, "VALIDATION_ERROR")[
            "details"
        ][0]["field"]
        == "record"
    )


def test_a_blank_usage_filter_value_selects_the_events_without_the_dimension(api):
    """``groupInfo`` shows a dimension an event lacks as ``""``; a filter on ``""`` selects them."""
    body = {
        "meterApiName": "x",
        "startTimeInSeconds": 0,
        "endTimeInSeconds": 3600,
        "aggregation": "SUM",
        "timeGroupingInterval": "HOUR",
        "filter": {"region": [" "]},
    }
    # Valid (trimmed to ""): the meter is what is missing here.
    assert error(api.post("/usage", body, format="json"), 404, "METER_DEFINITION_NOT_FOUND")
    values = _components()["UsageQueryRequestRequest"]["properties"]["filter"]["additionalProperties"]
    assert values["items"] == {"type": "string", "maxLength": 1000}


def test_report_usage_takes_exactly_a_bounded_number_and_no_nulls(account):
    reporter = client_for(account, scopes=["meter-report"], name="reporter")
    metering_services.meter_type_create(
        account_id=account.pk,
        name="M",
        unit="u",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        api_name="m",
    )

    def report(body, key):
        return reporter.post(
            "/billing/meters/usage",
            json.dumps({"customerId": "c", "meterName": "m", **body}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    for body, field in (
        ({"value": "12"}, "value"),
        ({"value": 1e300}, "value"),
        ({"value": None}, "value"),
        ({"value": 1, "meterName": None}, "meterName"),
        ({"value": 1, "metadata": None}, "metadata"),
        ({"value": 1, "timestamp": "0001-01-01T00:00:00+23:59"}, "timestamp"),
    ):
        assert error(report(body, f"k-{field}"), 400, "VALIDATION_ERROR")["details"][0]["field"] == field, (
            body
        )
    value = _components()["UsageReportRequest"]["properties"]["value"]
    assert value == {
        "type": "number",
        "maximum": 10**26,
        "exclusiveMaximum": True,
        "minimum": -(10**26),
        "exclusiveMinimum": True,
    }
    # A metadata name of any length is taken (a bound on keys is not expressible in OpenAPI 3.0).
    assert report({"value": 1, "metadata": {"": "x"}}, "k-metadata-name").status_code == 202


@pytest.mark.parametrize(
    "event,field",
    [
        ({"values": None}, "values"),
        ({"meterApiName": "calls", "meterValue": "1"}, "meterValue"),
        ({"meterApiName": "calls", "meterValue": None}, "meterValue"),
        ({"meterApiName": None, "values": {"calls": 1}}, "meterApiName"),
        ({"values": {"calls": "1"}}, "values.calls"),
        ({"meterApiName": "calls", "meterValue": 1, "customerId": "a\u0000"}, "customerId"),
        ({"values": {"ca\u0000lls": 1}}, "values.ca\u0000lls"),
    ],
)
def test_ingest_refuses_nulls_strings_for_numbers_and_null_characters(account, event, field):
    ingester = client_for(account, scopes=["usage-metering:ingest:usage"], name="ingester")
    body = {"customerId": "c", "meterTimeInMillis": 0, **event}
    response = ingester.post("/ingest", json.dumps(body), content_type="application/json")
    assert error(response, 400, "VALIDATION_ERROR")["details"][0]["field"] == field
    assert not DataCorrection.objects.exists()


def test_send_data_documents_its_idempotency_key_bounds():
    parameters = (
        Client()
        .get("/openapi.json")
        .json()["paths"]["/online-collection/collectors/{id}/data"]["post"]["parameters"]
    )
    key = next(parameter for parameter in parameters if parameter["name"] == "Idempotency-Key")
    assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NOT_BLANK_PATTERN}


def test_the_not_blank_pattern_says_what_python_strips():
    whitespace = re.compile(f"[{WHITESPACE_CLASS}]")
    assert all(bool(whitespace.fullmatch(chr(code))) == chr(code).isspace() for code in range(0x110000))
