"""Collector management (seed 000, "Online collection management"): declarative, services do the writes."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import status
from rest_framework.response import Response

from collection import services
from collection.api.serializers import (
    CollectorDeletedSerializer,
    CollectorSerializer,
    CollectorWriteSerializer,
)
from collection.models import Collector
from config.api.errors import ValidationFailed
from config.api.schema import ERROR_RESPONSES, page_parameters
from config.api.viewsets import AccountScopedViewSet

TAG = "Online collection management"
WRITE_LIMIT = "Rate limit: 1 request per second per client, burst 1."
READ_LIMIT = "Rate limit: 5 requests per minute per client, burst 5."
LIST_PARAMETERS = [
    *page_parameters(),  # limit/skip with the bounds config.api.pagination checks
    OpenApiParameter("sortBy", OpenApiTypes.STR, enum=["name", "status", "createdAt", "updatedAt"]),
    OpenApiParameter("sortOrder", OpenApiTypes.STR, enum=["ASC", "DESC"]),
]


@extend_schema_view(
    list=extend_schema(
        operation_id="listCollectors",
        tags=[TAG],
        summary="List collectors",
        parameters=LIST_PARAMETERS,
        description=f"Requires the scope `online-collection:read:collectors`. {READ_LIMIT}",
        responses={
            200: inline_serializer("CollectorList", {"collectors": CollectorSerializer(many=True)}),
            **ERROR_RESPONSES(400, 401, 403, 429, 500, 503),
        },
    ),
    create=extend_schema(
        operation_id="createCollector",
        tags=[TAG],
        summary="Create collector",
        request=CollectorWriteSerializer,
        description=(
            "Creates a collector in status CREATING; it becomes ACTIVE once provisioned (a task, within "
            "seconds) and accepts data from then on. At most five per account (409 COLLECTOR_LIMIT_REACHED); "
            "names are unique in the account (409 COLLECTOR_NAME_EXISTS). Requires the scope "
            f"`online-collection:create:collectors`. {WRITE_LIMIT}"
        ),
        responses={201: CollectorSerializer, **ERROR_RESPONSES(400, 401, 403, 409, 413, 429, 500, 503)},
    ),
    retrieve=extend_schema(
        operation_id="getCollector",
        tags=[TAG],
        summary="Get collector",
        description=f"Requires the scope `online-collection:read:collectors`. {READ_LIMIT}",
        responses={200: CollectorSerializer, **ERROR_RESPONSES(401, 403, 404, 429, 500, 503)},
    ),
    partial_update=extend_schema(
        operation_id="updateCollector",
        tags=[TAG],
        summary="Update collector",
        request=CollectorWriteSerializer,
        description=(
            "Renames the collector (the only field that can change; the body must not be empty). Requires the "
            f"scope `online-collection:update:collectors`. {WRITE_LIMIT}"
        ),
        responses={200: CollectorSerializer, **ERROR_RESPONSES(400, 401, 403, 404, 409, 413, 429, 500, 503)},
    ),
    destroy=extend_schema(
        operation_id="deleteCollector",
        tags=[TAG],
        summary="Delete collector",
        description=(
            "Stops the collector accepting data at once and removes it with its stored batches. Requires the "
            f"scope `online-collection:delete:collectors`. {WRITE_LIMIT}"
        ),
        responses={200: CollectorDeletedSerializer, **ERROR_RESPONSES(401, 403, 404, 429, 500, 503)},
    ),
)
class CollectorViewSet(AccountScopedViewSet):
    queryset = Collector.objects.exclude(status=Collector.Status.DELETING)
    serializer_class = CollectorSerializer
    list_key = "collectors"
    sort_fields = {"name": "name", "status": "status", "createdAt": "created_at", "updatedAt": "updated_at"}
    default_sort = "createdAt"
    not_found_code = "COLLECTOR_NOT_FOUND"
    not_found_message = "Collector not found."
    required_scopes = {
        "list": ["online-collection:read:collectors"],
        "retrieve": ["online-collection:read:collectors"],
        "create": ["online-collection:create:collectors"],
        "partial_update": ["online-collection:update:collectors"],
        "destroy": ["online-collection:delete:collectors"],
    }
    throttle_group = {
        "list": "collector_reads",
        "retrieve": "collector_reads",
        "create": "collector_writes",
        "partial_update": "collector_writes",
        "destroy": "collector_writes",
    }

    def create(self, request):
        body = CollectorWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        collector = services.collector_create(account_id=self.account_id, name=body.validated_data["name"])
        return Response(CollectorSerializer(collector).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        collector = self.get_object()
        if not isinstance(request.data, dict) or not request.data:
            raise ValidationFailed.for_field("name", "The body must not be empty: send the name to change.")
        body = CollectorWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        collector = services.collector_update(collector=collector, name=body.validated_data["name"])
        return Response(CollectorSerializer(collector).data)

    def destroy(self, request, pk=None):
        deleted = services.collector_delete(collector=self.get_object())
        return Response({"deletedCount": deleted})
