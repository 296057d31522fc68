"""The compatible APIs' endpoints.

``POST /ingest`` and ``POST /billing/meters/usage`` are hot routes (``INGEST``, ``REPORT``: served
by ``config.hot``'s pipeline, msgspec decoding, cached authentication, one ``usage_apply``; on the
event loop ``metering.compat.ingest_asgi``). Their OpenAPI description comes from the
``*Endpoint`` APIView classes (``schema_view``), which serve the same view.
The configuration endpoints are DRF views; every write is a service call.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from django.urls import resolve
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import BearerOrApiKeyAuthentication
from config.api.errors import ValidationFailed
from config.api.principal import Principal
from config.api.schema import ERROR_RESPONSES, NOT_BLANK_PATTERN
from config.hot.pipeline import Answer, Call, HotRoute
from metering.compat import amberflo, billing, ingest_asgi, serializers
from metering.compat.exceptions import IdempotencyKeyRequired
from metering.compat.usage_queries import UsageQuery, usage_query
from metering.ledger import MAX_KEY_LENGTH
from metering.models import MeterEventFilteringRule

INGEST_SCOPES = ["usage-metering:ingest:usage"]
USAGE_READ_SCOPES = ["usage-metering:read:usage"]
REPORT_SCOPES = ["meter-report"]
TYPE_SCOPES = {
    "GET": ["usage-metering:read:meter_types"],
    "POST": ["usage-metering:create:meter_types"],
    "PUT": ["usage-metering:update:meter_types"],
    "DELETE": ["usage-metering:delete:meter_types"],
}
AMBERFLO = ["Amberflo-compatible"]
BILLING = ["Billing-compatible"]
HOT_STATUSES = (400, 401, 403, 405, 413, 429, 500, 503)
# The idempotency key headers as report_usage checks them (trimmed, then 1 to MAX_KEY_LENGTH characters).
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_KEY_LENGTH,
    "pattern": NOT_BLANK_PATTERN,
}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
METER_EVENT_SCHEMA = {
    "type": "object",
    "required": ["customerId", "meterTimeInMillis"],
    "description": (
        "Seed 002's MeterEvent: meterApiName with meterValue, or values, or both. A field may be "
        "left out but not null; unknown fields are ignored."
    ),
    "properties": {
        "meterApiName": _NAME,
        "customerId": {"type": "string", "minLength": 1, "maxLength": 320},
        "meterValue": serializers.AMOUNT_SCHEMA,
        "meterTimeInMillis": {
            "type": "integer",
            "format": "int64",
            "minimum": 0,
            "maximum": 253_402_300_799_999,
        },
        "uniqueId": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "Deduplicates the event, per meter.",
        },
        "dimensions": serializers.name_map_schema(
            {"type": "string", "maxLength": 1000}, amberflo.MAX_DIMENSIONS
        ),
        "values": {
            **serializers.name_map_schema(serializers.AMOUNT_SCHEMA, amberflo.MAX_VALUES),
            "description": "meterApiName -> meterValue, for several meters at once.",
        },
    },
    # meterApiName and meterValue together (values optional), or values alone.
    "anyOf": [
        {"required": ["meterApiName", "meterValue"]},
        {
            "required": ["values"],
            "not": {"anyOf": [{"required": ["meterApiName"]}, {"required": ["meterValue"]}]},
        },
    ],
}
_ITEM = {
    "type": "object",
    "properties": {
        "index": {"type": "integer"},
        "meterApiName": {"type": "string"},
        "uniqueId": {"type": "string", "nullable": True},
    },
}
INGEST_SUMMARY_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["OK"]},
        "accepted": {"type": "integer"},
        "duplicates": {
            "type": "array",
            "items": {
                **_ITEM,
                "properties": {
                    **_ITEM["properties"],
                    "keyReused": {
                        "type": "boolean",
                        "description": "The uniqueId first came with another event.",
                    },
                },
            },
        },
        "excluded": {"type": "array", "items": _ITEM},
        "corrections": {
            "type": "array",
            "items": {
                **_ITEM,
                "properties": {
                    **_ITEM["properties"],
                    "reason": {"type": "string"},
                    "message": {"type": "string"},
                    "correctionId": {"type": "string", "format": "uuid", "nullable": True},
                },
            },
        },
    },
}


# --- hot routes (``config.hot``: the pipeline authenticates, checks the scope and rate-limits) ----


def decode_ingest(call: Call) -> tuple[list[amberflo.MeterEvent], str]:
    return amberflo.decode_events(call.body), call.headers.get("prefer", "")


def handle_ingest(principal: Principal, work: tuple[list[amberflo.MeterEvent], str]) -> Answer:
    """Seed 002 ``POST /ingest``: one event or an array; answers ``"OK"`` with counts in headers."""
    events, prefer = work
    answer = amberflo.events_ingest(account_id=principal.account_id, events=events)
    content, headers = answer.reply(prefer)
    return 200, content, headers


def decode_report(call: Call) -> tuple[str, bytes]:
    """The idempotency key (checked by ``handle_report``, after the rate limit) and the body."""
    key = (call.headers.get("idempotency-key") or call.headers.get("x-api-idempotency-key") or "").strip()
    return key, call.body


def handle_report(principal: Principal, work: tuple[str, bytes]) -> Answer:
    """Seed 004 ``POST /billing/meters/usage``: 202 queued, 200 duplicate, 409 for a reused key."""
    key, body = work
    if not key:
        raise IdempotencyKeyRequired(
            details=[{"field": "Idempotency-Key", "message": IdempotencyKeyRequired.message}]
        )
    answer = billing.usage_report(account_id=principal.account_id, idempotency_key=key, body=body)
    return answer.status, msgspec.json.encode(answer.body), {}


def _served_by_route(request, **params):
    """What the schema views' ``post`` does: the route's own view (``config.hot``)."""
    return resolve(request._request.path_info).func(request._request, **params)


class IngestEndpoint(APIView):
    """Describes ``ingest`` in the OpenAPI document (and serves the same function)."""

    authentication_classes = [BearerOrApiKeyAuthentication]
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        operation_id="ingestMeterEvents",
        summary="Ingest meter events",
        tags=AMBERFLO,
        description=(
            "Ingest one event or an array (at most INGEST_MAX_EVENTS). `uniqueId` deduplicates per meter; "
            "`values` reports several meters at once; the meter's filtering rules apply first (excluded events "
            "are reported, not stored). Events that cannot be counted (unknown meter, archived, timestamp "
            'outside the window...) go to data correction. Answers `"OK"` with the counts in the headers '
            "`X-Ingest-Accepted`, `X-Ingest-Duplicates`, `X-Ingest-Excluded`, `X-Ingest-Corrections` (and "
            "`X-Ingest-Key-Reused`: duplicates whose uniqueId first came with another event); send "
            "`Prefer: return=representation` for the list of duplicates, exclusions and corrections. "
            "Scope usage-metering:ingest:usage. Rate limit: 2000/s per client, burst 50."
        ),
        request={
            "application/json": {
                "oneOf": [METER_EVENT_SCHEMA, {"type": "array", "items": METER_EVENT_SCHEMA}]
            }
        },
        parameters=[
            OpenApiParameter(
                "Prefer",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="return=representation: answer the summary object.",
            )
        ],
        responses={
            200: OpenApiResponse(
                {"oneOf": [{"type": "string", "enum": ["OK"]}, INGEST_SUMMARY_SCHEMA]},
                description="Events accepted for ingestion.",
                examples=[OpenApiExample("OK", value="OK")],
            ),
            **ERROR_RESPONSES(*HOT_STATUSES),
        },
    )
    def post(self, request):
        return _served_by_route(request)


class UsageReportEndpoint(APIView):
    """Describes ``report_usage`` in the OpenAPI document (and serves the same function)."""

    authentication_classes = [BearerOrApiKeyAuthentication]
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        operation_id="reportUsage",
        summary="Report usage",
        tags=BILLING,
        request=serializers.UsageReportSerializer,
        description=(
            "Report a usage event to a meter (meterId or meterName). The `Idempotency-Key` (or "
            "`x-api-idempotency-key`) header is required: a replay answers 200 duplicate and is not counted "
            "twice; the same key with another body is 409 IDEMPOTENCY_KEY_REUSED. Archived meters are refused "
            "(400 METER_ARCHIVED). An event that cannot be counted is kept in data correction (its sourceRef "
            "is the requestId). Scope meter-report. Rate limit: 2000/s per client, burst 50."
        ),
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                IDEMPOTENCY_KEY_SCHEMA,
                OpenApiParameter.HEADER,
                required=False,
                description="Required unless x-api-idempotency-key is given. 1-255 characters.",
            ),
            OpenApiParameter(
                "x-api-idempotency-key",
                IDEMPOTENCY_KEY_SCHEMA,
                OpenApiParameter.HEADER,
                required=False,
                description="Idempotency key to deduplicate submissions.",
            ),
        ],
        responses={
            202: OpenApiResponse(serializers.ReportQueuedSerializer, description="Accepted for ingestion."),
            200: OpenApiResponse(
                serializers.ReportDuplicateSerializer, description="Duplicate request detected."
            ),
            404: ERROR_RESPONSES(404)[404],
            409: ERROR_RESPONSES(409)[409],
            **ERROR_RESPONSES(*HOT_STATUSES),
        },
    )
    def post(self, request):
        return _served_by_route(request)


INGEST = HotRoute(
    path="ingest",
    name="amberflo-ingest",
    scopes=tuple(INGEST_SCOPES),
    rate_group="ingest",
    decode=decode_ingest,
    handle=handle_ingest,
    settle_on_loop=ingest_asgi.settle_ingest,
    handle_on_loop=ingest_asgi.ingest_on_loop,
    allow_api_key=True,
    schema_view=IngestEndpoint,
    trailing_slash=True,
)
REPORT = HotRoute(
    path="billing/meters/usage",
    name="billing-report-usage",
    scopes=tuple(REPORT_SCOPES),
    rate_group="billing",
    decode=decode_report,
    handle=handle_report,
    settle_on_loop=ingest_asgi.settle_report,
    handle_on_loop=ingest_asgi.report_on_loop,
    allow_api_key=True,
    schema_view=UsageReportEndpoint,
)


# --- Amberflo configuration and queries ---------------------------------------------------------


class AmberfloView(APIView):
    authentication_classes = [BearerOrApiKeyAuthentication]

    @property
    def account_id(self):
        return self.request.auth.account_id


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class MeterDefinitionsView(AmberfloView):
    required_scopes = TYPE_SCOPES
    throttle_group = "meter_types"

    @extend_schema(
        operation_id="listMeterDefinitions",
        summary="List meter definitions",
        tags=AMBERFLO,
        description="Every meter definition (meter type) of the account. Rate limit: 20/s, burst 5.",
        responses={
            200: serializers.MeterDefinitionSerializer(many=True),
            **ERROR_RESPONSES(401, 403, 413, 429, 500, 503),
        },
    )
    def get(self, request):
        types = amberflo.meter_definitions(self.account_id)
        return Response([amberflo.meter_definition(meter_type) for meter_type in types])

    @extend_schema(
        operation_id="createMeterDefinition",
        summary="Create meter definition",
        tags=AMBERFLO,
        request=serializers.MeterDefinitionRequestSerializer,
        description=(
            "Create a meter definition: a meter type with monthly UTC periods whose customers' "
            "meters are created on first usage. 409 when the meterApiName is taken (the "
            "displayName is a label and may repeat). Rate limit: 20/s, burst 5."
        ),
        responses={
            200: serializers.MeterDefinitionSerializer,
            **ERROR_RESPONSES(400, 401, 403, 409, 413, 429, 500, 503),
        },
    )
    def post(self, request):
        data = _valid(serializers.MeterDefinitionRequestSerializer, request.data)
        meter_type = amberflo.meter_definition_create(
            account_id=self.account_id,
            meter_api_name=data["meterApiName"],
            display_name=data["displayName"],
            kind=data["type"],
            dimensions=data.get("dimensions"),
        )
        return Response(amberflo.meter_definition(meter_type))

    @extend_schema(
        operation_id="updateMeterDefinition",
        summary="Update meter definition",
        tags=AMBERFLO,
        request=serializers.MeterDefinitionUpdateSerializer,
        description=(
            "Change the displayName or dimensions of the definition named by meterApiName. "
            "The type cannot change (400 AGGREGATION_IMMUTABLE). Rate limit: 20/s, burst 5."
        ),
        responses={
            200: serializers.MeterDefinitionSerializer,
            **ERROR_RESPONSES(400, 401, 403, 404, 409, 413, 429, 500, 503),
        },
    )
    def put(self, request):
        data = _valid(serializers.MeterDefinitionUpdateSerializer, request.data)
        meter_type = amberflo.meter_definition_update(
            account_id=self.account_id,
            meter_api_name=data["meterApiName"],
            display_name=data.get("displayName"),
            kind=data.get("type"),
            dimensions=data.get("dimensions"),
        )
        return Response(amberflo.meter_definition(meter_type))


class MeterDefinitionView(AmberfloView):
    required_scopes = TYPE_SCOPES
    throttle_group = "meter_types"

    @extend_schema(
        operation_id="getMeterDefinitionById",
        summary="Get meter definition",
        tags=AMBERFLO,
        description="One meter definition by its meterApiName. Rate limit: 20/s, burst 5.",
        responses={
            200: serializers.MeterDefinitionSerializer,
            **ERROR_RESPONSES(401, 403, 404, 413, 429, 500, 503),
        },
    )
    def get(self, request, meterApiName: str):
        return Response(
            amberflo.meter_definition(
                amberflo.meter_definition_get(account_id=self.account_id, meter_api_name=meterApiName)
            )
        )

    @extend_schema(
        operation_id="deleteMeterDefinition",
        summary="Delete meter definition",
        tags=AMBERFLO,
        description=(
            "Delete a meter definition. Once usage made customers' meters, its meter type is "
            "archived (the usage ledger and flushed records stay; each meter goes after its next "
            "flush) and its meterApiName released: a new definition may take it, and events for "
            "it are an unknown meter's until then. Rate limit: 20/s, burst 5."
        ),
        responses={
            200: OpenApiResponse(
                {"type": "object", "properties": {"deletedCount": {"type": "integer"}}},
                description="Meter definition deleted.",
            ),
            **ERROR_RESPONSES(401, 403, 404, 409, 413, 429, 500, 503),
        },
    )
    def delete(self, request, meterApiName: str):
        return Response(
            {
                "deletedCount": amberflo.meter_definition_delete(
                    account_id=self.account_id, meter_api_name=meterApiName
                )
            }
        )


class UsageView(AmberfloView):
    required_scopes = {"POST": USAGE_READ_SCOPES}
    throttle_group = "usage_queries"

    @extend_schema(
        operation_id="queryUsage",
        summary="Query usage data",
        tags=AMBERFLO,
        request=serializers.UsageQueryRequestSerializer,
        description=(
            "A meter's usage per time bucket (UTC; weeks start on Monday), optionally grouped by "
            "customerId and dimensions and filtered by customers and dimension values. Every "
            "bucket of the range is answered (0 without usage). Exact at any alignment: the events with "
            "startTimeInSeconds <= time < endTimeInSeconds (each bucket keyed by its start; the first and last "
            'count their part inside the range). groupInfo holds a dimension an event lacks as "". '
            "Scope usage-metering:read:usage. "
            "Rate limit: 50/s, burst 10."
        ),
        responses={
            200: serializers.UsageQueryResponseSerializer,
            **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503),
        },
    )
    def post(self, request):
        data = _valid(serializers.UsageQueryRequestSerializer, request.data)
        return Response(usage_query(account_id=self.account_id, query=_usage_query_of(data)))


def _usage_query_of(data: dict) -> UsageQuery:
    """A validated UsageQueryRequest as a ``UsageQuery``; a range without an end ends now."""
    end = data["endTimeInSeconds"]
    take = data.get("take")
    return UsageQuery(
        meter_api_name=data["meterApiName"],
        start=datetime.fromtimestamp(data["startTimeInSeconds"], UTC),
        end=datetime.fromtimestamp(end, UTC) if end is not None else timezone.now(),
        aggregation=data["aggregation"],
        interval=data["timeGroupingInterval"],
        group_by=list(data.get("groupBy") or []),
        customers=list(data["customerFilter"]) if data.get("customerFilter") is not None else None,
        filters={name: list(values) for name, values in (data.get("filter") or {}).items()},
        take_limit=take["limit"] if take else None,
        take_ascending=take["isAscending"] if take else False,
    )


USAGE_BATCH_MAX_QUERIES = 20


class UsageBatchView(AmberfloView):
    required_scopes = {"POST": USAGE_READ_SCOPES}
    throttle_group = "usage_queries"

    @extend_schema(
        operation_id="queryUsageBatch",
        summary="Query usage data in a batch",
        tags=AMBERFLO,
        request={
            "application/json": {
                "type": "array",
                "minItems": 1,
                "maxItems": USAGE_BATCH_MAX_QUERIES,
                # The component drf-spectacular makes for POST /usage's request (COMPONENT_SPLIT_REQUEST).
                "items": {"$ref": "#/components/schemas/UsageQueryRequestRequest"},
            }
        },
        description=(
            "Several usage queries at once (the Amberflo SDK's `UsageApiClient.get` with a list): "
            f"at most {USAGE_BATCH_MAX_QUERIES}, answered by a list of reports in the same order, "
            "each as `POST /usage` answers it. One invalid query makes the whole batch a 400 "
            "(its index in the field). Scope usage-metering:read:usage. Rate limit: 50/s, burst 10."
        ),
        responses={
            200: serializers.UsageQueryResponseSerializer(many=True),
            **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503),
        },
    )
    def post(self, request):
        if not isinstance(request.data, list) or not 1 <= len(request.data) <= USAGE_BATCH_MAX_QUERIES:
            raise ValidationFailed.for_field(
                "", f"The body must be a list of 1 to {USAGE_BATCH_MAX_QUERIES} usage queries."
            )
        serializer = serializers.UsageQueryRequestSerializer(
            data=request.data, many=True, min_length=1, max_length=USAGE_BATCH_MAX_QUERIES
        )
        serializer.is_valid(raise_exception=True)
        return Response(
            [
                usage_query(account_id=self.account_id, query=_usage_query_of(data))
                for data in serializer.validated_data
            ]
        )


class FilteringRulesView(AmberfloView):
    required_scopes = {
        "GET": ["usage-metering:read:meter_types"],
        "POST": ["usage-metering:create:meter_types", "usage-metering:update:meter_types"],
    }
    throttle_group = "meter_types"

    @extend_schema(
        operation_id="listFilteringRules",
        summary="List filtering rules",
        tags=AMBERFLO,
        parameters=[OpenApiParameter("meterApiName", {"type": "string", "minLength": 1}, required=True)],
        description="The filtering rules of one meter. Rate limit: 20/s, burst 5.",
        responses={
            200: serializers.FilteringRuleSerializer(many=True),
            **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503),
        },
    )
    def get(self, request):
        name = request.query_params.get("meterApiName")
        if not name:
            raise ValidationFailed.for_field("meterApiName", "meterApiName is required.")
        meter_type = amberflo.meter_definition_get(account_id=self.account_id, meter_api_name=name)
        rules = (
            MeterEventFilteringRule.objects.filter(meter_type=meter_type)
            .select_related("meter_type")
            .order_by("created_at", "pk")
        )
        return Response([amberflo.filtering_rule(rule) for rule in rules])

    @extend_schema(
        operation_id="createFilteringRule",
        summary="Create or update filtering rule",
        tags=AMBERFLO,
        request=serializers.FilteringRuleSerializer,
        description=(
            "Create or update a rule: INCLUDE keeps only events whose dimension has one of the "
            "values, EXCLUDE drops them. With ruleId that rule is updated; otherwise the meter's "
            "rule on the same dimension is, or a new one is made. Rate limit: 20/s, burst 5."
        ),
        responses={
            200: serializers.FilteringRuleSerializer,
            **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503),
        },
    )
    def post(self, request):
        data = _valid(serializers.FilteringRuleSerializer, request.data)
        rule = amberflo.filtering_rule_save(
            account_id=self.account_id,
            meter_api_name=data["meterApiName"],
            dimension_name=data["dimensionName"],
            dimension_values=data["dimensionValues"],
            action=data["action"],
            rule_id=data.get("ruleId"),
        )
        return Response(amberflo.filtering_rule(rule))
