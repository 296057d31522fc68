"""Stream management: list, get, export, versions, import (seed 000). Thin: parse, call, shape."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Account
from config.api.errors import ValidationFailed
from config.api.pagination import page_from
from config.api.schema import COMMON_STATUSES, ERROR_RESPONSES, page_parameters
from config.api.viewsets import AccountScopedViewSet
from streams import selectors, services
from streams.api.serializers import (
    FIELDS_PATTERN,
    SessionSerializer,
    StreamConfigSerializer,
    StreamImportResponseSerializer,
    StreamImportSerializer,
    StreamListSerializer,
    StreamPreviewResponseSerializer,
    StreamPreviewSerializer,
    StreamProjectionSerializer,
    StreamSerializer,
    StreamVersionListSerializer,
    fields_parse,
    preview_body,
    project,
)
from streams.engine import selectors as engine_selectors
from streams.engine import services as engine_services
from streams.models import Stream

# TAG_PATTERN (streams.config) for the schema: "" is accepted as "no tag" too.
TAG_SCHEMA_PATTERN = r"^(?:[A-Za-z0-9][A-Za-z0-9._+-]{0,99})?$"
READ = ["stream-management:read:streams"]
WRITE = ["stream-management:write:streams"]

ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The stream's id."
)
TAG_PARAMETER = OpenApiParameter(
    "tag",
    {"type": "string", "pattern": TAG_SCHEMA_PATTERN},
    description="A version tag (e.g. v1.0.1); without it, the latest (autosaved) configuration. "
    "An unknown tag is 404.",
)
FIELDS_PARAMETER = OpenApiParameter(
    "fields",
    {"type": "string", "pattern": FIELDS_PATTERN},
    description="Comma-separated fields to include, dot notation for nested ones (e.g. name,nodes.name).",
)
RESOURCE_REFS_PARAMETER = OpenApiParameter(
    "resourceRefs",
    {"type": "array", "items": {"type": "string", "pattern": selectors.RESOURCE_REFS_PATTERN}},
    explode=True,
    description="<resourceType>:<resourceId>, repeated (OR-ed); types meterKey, onlineCollector, "
    "scriptAggregationStore, dataAggregationStore; resourceId * for any (e.g. meterKey:*).",
)
LIMIT_PARAMETER, SKIP_PARAMETER = page_parameters()


def _errors(*statuses: int) -> dict:
    return ERROR_RESPONSES(*sorted(set(COMMON_STATUSES) | set(statuses)))


class StreamViewSet(AccountScopedViewSet):
    queryset = Stream.objects.all()
    serializer_class = StreamSerializer
    not_found_code = "STREAM_NOT_FOUND"
    not_found_message = "Stream not found."
    required_scopes = {
        "list": READ,
        "retrieve": READ,
        "export": READ,
        "versions": READ,
        "import_stream": WRITE,
        "preview": READ + WRITE,
    }
    throttle_group = "streams"

    def _resource_refs(self) -> list[selectors.ResourceRef]:
        return selectors.resource_refs_parse(self.request.query_params.getlist("resourceRefs"))

    def _snapshot(self, stream: Stream) -> selectors.StreamSnapshot:
        return selectors.stream_snapshot_for_tag(stream, self.request.query_params.get("tag"))

    @extend_schema(
        operation_id="streams_list",
        summary="List streams",
        parameters=[
            OpenApiParameter(
                "solutionId", OpenApiTypes.UUID, description="Only the streams of this solution."
            ),
            FIELDS_PARAMETER,
            OpenApiParameter("name", str, description="Exact, case-sensitive stream name."),
            RESOURCE_REFS_PARAMETER,
            OpenApiParameter(
                "cursor",
                {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
                description="The nextCursor of the previous page (opaque).",
            ),
            LIMIT_PARAMETER,
        ],
        responses={200: StreamListSerializer, **_errors()},
    )
    def list(self, request, *args, **kwargs):
        params = request.query_params
        fields = fields_parse(params.get("fields"))
        solution_id = None
        if "solutionId" in params:
            try:
                solution_id = uuid.UUID(params["solutionId"])
            except ValueError:
                raise ValidationFailed.for_field("solutionId", "solutionId must be a solution id (UUID).")
        cursor = selectors.Cursor.decode(params["cursor"]) if params.get("cursor") else None
        page = selectors.stream_list(
            account_id=self.account_id,
            solution_id=solution_id,
            name=params.get("name"),
            resource_refs=self._resource_refs(),
            cursor=cursor,
            limit=page_from(params).limit,
        )
        streams = [project(StreamSerializer(selectors.stream_snapshot(s)).data, fields) for s in page.streams]
        body = {"streams": streams}
        if page.next_cursor:
            body["nextCursor"] = page.next_cursor
        return Response(body)

    @extend_schema(
        operation_id="streams_retrieve",
        summary="Get stream",
        parameters=[ID_PARAMETER, FIELDS_PARAMETER, TAG_PARAMETER],
        responses={200: StreamProjectionSerializer, **_errors(404)},
    )
    def retrieve(self, request, *args, **kwargs):
        fields = fields_parse(request.query_params.get("fields"))
        snapshot = self._snapshot(self.get_object())
        return Response(project(StreamSerializer(snapshot).data, fields))

    @extend_schema(
        operation_id="streams_export",
        summary="Export stream",
        description="The configuration without ids and server fields, ready for POST /streams/import.",
        parameters=[ID_PARAMETER, TAG_PARAMETER],
        responses={200: StreamConfigSerializer, **_errors(404)},
    )
    @action(detail=True, methods=["get"])
    def export(self, request, *args, **kwargs):
        return Response(self._snapshot(self.get_object()).export())

    @extend_schema(
        operation_id="streams_versions_list",
        summary="List stream versions",
        description="The stream's tagged versions, newest first.",
        parameters=[
            ID_PARAMETER,
            SKIP_PARAMETER,
            LIMIT_PARAMETER,
            RESOURCE_REFS_PARAMETER,
        ],
        responses={200: StreamVersionListSerializer, **_errors(404)},
    )
    @action(detail=True, methods=["get"])
    def versions(self, request, *args, **kwargs):
        stream = self.get_object()
        page = page_from(request.query_params)
        versions = selectors.stream_versions(stream=stream, resource_refs=self._resource_refs())
        return Response(
            {
                "total": versions.count(),
                "versions": [
                    StreamSerializer(selectors.stream_snapshot(stream, version)).data
                    for version in versions[page.skip : page.skip + page.limit]
                ],
            }
        )

    @extend_schema(
        operation_id="streams_import",
        summary="Import stream",
        description=(
            "Imports a stream configuration into the solution `solutionId`. A solution id the account "
            "does not have yet creates that solution for the account; an id held by another account's "
            "solution is 404 SOLUTION_NOT_FOUND (it is never reached)."
        ),
        request=StreamImportSerializer.documented(),
        responses={
            200: OpenApiResponse(
                StreamImportResponseSerializer, description="importAction created, overwritten or skipped."
            ),
            **_errors(404, 409),
        },
    )
    @action(detail=False, methods=["post"], url_path="import")
    def import_stream(self, request, *args, **kwargs):
        serializer = StreamImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.stream_import(
            account=self.principal_account(),
            solution_id=data["solutionId"],
            stream_config=data["streamConfig"],
            on_name_conflict=data.get("onNameConflict"),
            allow_node_deletion=data["allowNodeDeletion"],
            actor=services.actor_for_principal(self.principal),
        )
        return Response(
            {
                "importAction": result.action.value,
                "stream": StreamSerializer(selectors.stream_snapshot(result.stream)).data,
                "tag": result.tag,
            }
        )

    @extend_schema(
        operation_id="streams_preview",
        summary="Preview stream",
        description=(
            "Runs sample records through the stream (the latest configuration, or the version `tag`) and "
            "answers every node's output records, rejections (with the reason) and counts. Nothing is "
            "persisted: deduplicate, aggregators, inspect, the Meter processor and the HTTP forwarder run "
            "dry (aggregators show their sessions as they would be emitted). At most 1000 records."
        ),
        parameters=[ID_PARAMETER],
        request=StreamPreviewSerializer,
        responses={200: StreamPreviewResponseSerializer, **_errors(404)},
    )
    @action(detail=True, methods=["post"])
    def preview(self, request, *args, **kwargs):
        stream = self.get_object()
        serializer = StreamPreviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = engine_services.stream_preview(
            stream=stream,
            records=serializer.validated_data["records"],
            tag=serializer.validated_data.get("tag") or None,
        )
        return Response(preview_body(result))

    def principal_account(self) -> Account:
        return Account.objects.get(pk=self.account_id)


class AggregationSessionLookupView(APIView):
    """Seed 000 "Lookup script aggregation session"."""

    required_scopes = {"GET": ["aggregation:read:sessions"]}
    throttle_group = "aggregation"

    @extend_schema(
        operation_id="aggregation_sessions_lookup",
        summary="Lookup script aggregation session",
        description=(
            "Computes the session key from `fieldValues` (in the order of the aggregator's key fields, exactly as "
            "the aggregator does) and returns that session of the store."
        ),
        parameters=[
            OpenApiParameter(
                "id",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                description="The aggregation store's id (the aggregator node's storeId).",
            ),
            OpenApiParameter(
                "fieldValues",
                str,
                many=True,
                explode=True,
                required=True,
                description="One value per key field, in order: fieldValues=customer123&fieldValues=order456",
            ),
        ],
        responses={200: SessionSerializer, **_errors(404)},
    )
    def get(self, request, id: str):
        session = engine_selectors.aggregation_session_lookup(
            account_id=request.auth.account_id,
            store_id=id,
            field_values=request.query_params.getlist("fieldValues"),
        )
        return Response(SessionSerializer(session).data)
