"""The defects schemathesis found at the edges of the API conventions, each pinned by a test.

Before the fixes: ``skip`` past a 64-bit OFFSET, a null character in a query or path, and a null
character or lone surrogate inside a JSON body stored in jsonb were all 500s; OPTIONS was a 403;
an unsupported method on a plain APIView was a 403; ``Accept: text/html`` was a 406 and
``?format=xml`` a 404; and several query parameters took values the schema does not allow.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from config.api.pagination import MAX_SKIP
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


@pytest.mark.parametrize("query,field", [
    ("limit=1_0", "limit"), ("limit=%207", "limit"), ("limit=%D9%A3", "limit"), ("limit=", "limit"),
    ("skip=", "skip"), ("skip=-1", "skip"), ("sortOrder=desc", "sortOrder"), ("sortOrder=", "sortOrder"),
    ("sortBy=", "sortBy"),
])
def test_paging_parameters_take_exactly_what_the_schema_says(api, query, field):
    body = error(api.get(f"/notification-endpoints?{query}"), 400, "VALIDATION_ERROR")
    assert [detail["field"] for detail in body["details"]] == [field]


def test_paging_parameters_within_the_schema_are_accepted(api):
    for query in ("limit=1", "limit=100", "skip=0", "sortOrder=DESC", "sortBy=updatedAt&sortOrder=ASC"):
        assert api.get(f"/notification-endpoints?{query}").status_code == 200, query


@pytest.mark.parametrize("url,field", [
    ("/parameters?name=%00", "name"),
    ("/parameters?name=a&sortBy=name%00", "sortBy"),
    ("/parameters/a%00b", "path"),
    ("/streams?name=x%00", "name"),
    ("/aggregation/stores/0f0e0d0c-0b0a-4908-8706-050403020100/sessions/lookup?fieldValues=%00", "fieldValues"),
])
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
    raw = json.dumps({"solutionId": str(solution.pk), "streamConfig": config})  # \\u escapes, as a client sends
    body = error(api.post("/streams/import", raw, content_type="application/json"), 400, "VALIDATION_ERROR")
    assert body["details"] == [{"field": "streamConfig.annotation.note", "message": message}]
    # In keys too, wherever they are: the parser refuses them before any view sees the body.
    keyed = json.dumps({"name": "a", "type": "standard", "value": "v", "labels": [{value: 1}]})
    body = error(api.post("/parameters", keyed, content_type="application/json"), 400, "VALIDATION_ERROR")
    assert body["details"] == [{"field": f"labels[0].{value}", "message": message}]
    assert (Stream.objects.count(), Parameter.objects.count()) == (0, 0)


def test_deep_values_below_the_nesting_limit_are_still_accepted():
    from config.api.parsers import MAX_JSON_DEPTH, decode_json

    deepest = json.dumps(json.loads("[" * (MAX_JSON_DEPTH - 1) + "1, \"x\"" + "]" * (MAX_JSON_DEPTH - 1)))
    assert decode_json(deepest.encode())


def test_options_answers_the_resource_methods_with_any_valid_token(account):
    narrow = client_for(account, scopes=["meter-report"], name="narrow")
    response = narrow.options("/parameters")
    assert response.status_code == 200
    assert response["Allow"] == "GET, POST, DELETE, HEAD, OPTIONS"
    assert response.json() == {"allowedMethods": ["GET", "POST", "DELETE", "HEAD", "OPTIONS"]}
    assert narrow.options("/aggregation/stores/x/sessions/lookup").json() == {
        "allowedMethods": ["GET", "HEAD", "OPTIONS"]}
    error(Client().options("/parameters"), 401, "UNAUTHORIZED")


def test_a_method_an_api_view_does_not_have_is_405_with_allow(api):
    response = api.put("/aggregation/stores/0f0e0d0c-0b0a-4908-8706-050403020100/sessions/lookup")
    error(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "GET, HEAD, OPTIONS"


def test_the_api_answers_json_whatever_the_accept_header_or_format_asks(api):
    for response in (api.get("/parameters", HTTP_ACCEPT="text/html"), api.get("/parameters?format=xml"),
                     api.get("/parameters", HTTP_ACCEPT="application/xml")):
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"parameters": []}
    error(api.get("/parameters/missing", HTTP_ACCEPT="text/html"), 404, "PARAMETER_NOT_FOUND")


@pytest.mark.parametrize("query,field", [
    ("solutionId=", "solutionId"),
    ("fields=name,%20nodes", "fields"),
    ("fields=name,", "fields"),
    ("fields=nodes.na%20me", "fields"),
    ("resourceRefs=meterKey:a,%20meterKey:b", "resourceRefs"),
    ("resourceRefs=meterKey:", "resourceRefs"),
    ("resourceRefs=meterKey:a,", "resourceRefs"),
])
def test_stream_list_filters_take_exactly_what_the_schema_says(api, query, field):
    body = error(api.get(f"/streams?{query}"), 400, "VALIDATION_ERROR")
    assert [detail["field"] for detail in body["details"]] == [field]


def test_stream_list_filters_within_the_schema_are_accepted(api):
    for query in ("fields=", "fields=name,nodes.config.meterKey", "resourceRefs=", "resourceRefs=meterKey:*",
                  "resourceRefs=meterKey:a,onlineCollector:b", "cursor=", "name="):
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
    assert components["PatchedParameterUpdateRequest"]["anyOf"] == [{"required": ["description"]},
                                                                    {"required": ["value"]}]
    # Paging bounds as config.api.pagination checks them.
    limit = next(p for p in paths["/notification-endpoints"]["get"]["parameters"] if p["name"] == "limit")
    skip = next(p for p in paths["/notification-endpoints"]["get"]["parameters"] if p["name"] == "skip")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert skip["schema"] == {"type": "integer", "minimum": 0, "maximum": MAX_SKIP}
    # 429 and 503 say their Retry-After.
    assert paths["/streams"]["get"]["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    assert paths["/streams"]["get"]["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    assert {paths["/parameters"]["get"]["operationId"], paths["/parameters/{name}"]["get"]["operationId"]} == {
        "parameters_list", "parameters_retrieve"}
    # GET /streams?fields=cas answers {"cas": 1} per stream: the projected stream requires no field.
    projected = components["StreamProjection"]
    assert "required" not in projected and "required" not in projected["properties"]["nodes"]["items"]
    assert components["Stream"]["required"][:3] == ["annotation", "cas", "createdAt"]


def test_a_projected_stream_answers_only_the_fields_asked_for(api, account):
    solution = stream_services.solution_create(account=account, name="Projection")
    stream_services.stream_import(account=account, solution_id=str(solution.pk), stream_config=chain(name="P"),
                                  actor={"type": "client", "id": "edges"})
    assert api.get("/streams?fields=cas,nodes.name").json() == {
        "streams": [{"cas": 1, "nodes": [{"name": "In"}]}]}


def test_the_compatible_endpoints_take_a_token_or_an_api_key_not_both():
    """Two security requirements (either one), not one naming both (which would require both headers)."""
    schema = Client().get("/openapi.json").json()
    for path in ("/ingest", "/usage", "/meter-definition", "/billing/meters/usage"):
        assert schema["paths"][path]["post"]["security"] == [{"BearerToken": []}, {"ApiKey": []}], path
    assert schema["paths"]["/meters"]["get"]["security"] == [{"BearerToken": []}]


def test_data_corrections_refuse_an_empty_enum_filter_and_take_blank_ids_as_unknown(api):
    assert api.get("/data-corrections?status=").status_code == 400
    assert error(api.get("/data-corrections?reason="), 400, "VALIDATION_ERROR")["details"][0]["field"] == "reason"
    # An id of whitespace is an id nobody has (schema: any string of 1 to 36), not a blank field.
    response = api.post("/data-corrections/discard", {"ids": ["\t\u0085"]}, format="json")
    assert error(response, 404, "DATA_CORRECTION_NOT_FOUND")["details"][0]["field"] == "ids"


def test_collectors_refuse_a_name_that_is_not_a_string(api):
    body = error(api.post("/online-collection/collectors", {"name": 0}, format="json"), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "name"
    schema = Client().get("/openapi.json").json()["components"]["schemas"]["SendDataRequestRequest"]
    assert schema["properties"]["data"]["oneOf"] == [{"type": "string"}, {"type": "object"}, {"type": "array"}]
