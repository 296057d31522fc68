"""``/meter-types`` and ``/meters`` (seed 000): declarative viewsets; every write is a service call."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api.errors import ValidationFailed
from config.api.pagination import paginate, sort_queryset
from config.api.schema import COMMON_STATUSES, ERROR_RESPONSES, page_parameters
from config.api.viewsets import AccountScopedViewSet
from metering import selectors, services
from metering.api.serializers import (
    MeterCreateSerializer,
    MeteredRecordSerializer,
    MeterSerializer,
    MeterTypeSerializer,
    MeterUpdateSerializer,
)
from metering.exceptions import MeterNotFound, MeterTypeNotFound

DeletedSerializer = inline_serializer("DeletedCount", {"deletedCount": serializers.IntegerField()})
PAGE_PARAMETERS = [
    *page_parameters(),  # limit/skip with the bounds config.api.pagination checks
    OpenApiParameter("sortOrder", str, enum=["ASC", "DESC"], description="Default ASC."),
]


def _sort_parameter(fields: dict[str, str], default: str) -> OpenApiParameter:
    return OpenApiParameter("sortBy", str, enum=sorted(fields), description=f"Default {default}.")


def _errors(*statuses: int) -> dict:
    return ERROR_RESPONSES(*sorted(set(COMMON_STATUSES) | set(statuses)))


METER_TYPE_SORT = {
    "activeFrom": "active_from",
    "activeTo": "active_to",
    "category": "category",
    "createdAt": "created_at",
    "externalRef": "external_ref",
    "name": "name",
    "numberOfMeters": "number_of_meters",
    "unit": "unit",
    "updatedAt": "updated_at",
}
METER_SORT = {
    "createdAt": "created_at",
    "meterKey": "meter_key",
    "periodEnd": "period_end",
    "periodStart": "period_start",
    "updatedAt": "updated_at",
    "userId": "user_id",
    "value": "value",
}
RECORD_SORT = {"createdAt": "created_at", "periodEnd": "period_end", "periodStart": "period_start"}
TYPE_RATE = "Rate limit: 20 requests/s per client, burst 5."
METER_RATE = "Rate limit: 50 requests/s per client, burst 5."


@extend_schema_view(
    list=extend_schema(
        operation_id="listMeterTypes",
        summary="List meter types",
        tags=["Meter type"],
        description=f"Meter types of the account. {TYPE_RATE}",
        parameters=[
            *PAGE_PARAMETERS,
            _sort_parameter(METER_TYPE_SORT, "createdAt"),
            OpenApiParameter("name", str, description="Full or partial name (case-insensitive)."),
        ],
        responses={
            200: inline_serializer("MeterTypeList", {"meterTypes": MeterTypeSerializer(many=True)}),
            **_errors(),
        },
    ),
    retrieve=extend_schema(
        operation_id="getMeterType",
        summary="Get meter type",
        tags=["Meter type"],
        description=TYPE_RATE,
        responses={200: MeterTypeSerializer, **_errors(404)},
    ),
    create=extend_schema(
        operation_id="createMeterType",
        summary="Create meter type",
        tags=["Meter type"],
        description=f"Create a meter type. Name, externalRef and apiName are unique in the account (409). {TYPE_RATE}",
        request=MeterTypeSerializer,
        responses={201: MeterTypeSerializer, **_errors(409)},
    ),
    partial_update=extend_schema(
        operation_id="updateMeterType",
        summary="Update meter type",
        tags=["Meter type"],
        description=(
            "Change a meter type. The aggregation cannot change (400 AGGREGATION_IMMUTABLE). Existing "
            f"meters keep their capacity and thresholds; a new schedule applies from the next period. {TYPE_RATE}"
        ),
        request=MeterTypeSerializer,
        responses={200: MeterTypeSerializer, **_errors(404, 409)},
    ),
    destroy=extend_schema(
        operation_id="deleteMeterType",
        summary="Delete meter type",
        tags=["Meter type"],
        description=f"Delete a meter type that has no meters (409 METER_TYPE_IN_USE otherwise). {TYPE_RATE}",
        responses={200: DeletedSerializer, **_errors(404, 409)},
    ),
)
class MeterTypeViewSet(AccountScopedViewSet):
    queryset = selectors.meter_types_with_meter_counts()
    serializer_class = MeterTypeSerializer
    list_key = "meterTypes"
    sort_fields = METER_TYPE_SORT
    not_found_code = MeterTypeNotFound.code
    not_found_message = MeterTypeNotFound.message
    throttle_group = "meter_types"
    required_scopes = {
        "list": ["usage-metering:read:meter_types"],
        "retrieve": ["usage-metering:read:meter_types"],
        "create": ["usage-metering:create:meter_types"],
        "partial_update": ["usage-metering:update:meter_types"],
        "destroy": ["usage-metering:delete:meter_types"],
    }

    def filter_list(self, queryset):
        name = self.request.query_params.get("name")
        return queryset.filter(name__icontains=name) if name else queryset

    def _answer(self, meter_type, status_code=status.HTTP_200_OK) -> Response:
        fresh = selectors.meter_type_with_meter_count(meter_type_id=meter_type.pk)
        return Response(self.get_serializer(fresh).data, status=status_code)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        meter_type = services.meter_type_create(account_id=self.account_id, **serializer.validated_data)
        return self._answer(meter_type, status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        meter_type = self.get_object()
        serializer = self.get_serializer(meter_type, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        return self._answer(services.meter_type_update(meter_type=meter_type, data=serializer.validated_data))

    def destroy(self, request, pk=None):
        return Response({"deletedCount": services.meter_type_delete(meter_type=self.get_object())})


@extend_schema_view(
    list=extend_schema(
        operation_id="listMeters",
        summary="List meters",
        tags=["Meter"],
        description=f"Meters of the account. {METER_RATE}",
        parameters=[
            *PAGE_PARAMETERS,
            _sort_parameter(METER_SORT, "createdAt"),
            OpenApiParameter("meterKey", str),
            OpenApiParameter("meterTypeId", uuid.UUID),
            OpenApiParameter("userId", str),
        ],
        responses={200: inline_serializer("MeterList", {"meters": MeterSerializer(many=True)}), **_errors()},
    ),
    retrieve=extend_schema(
        operation_id="getMeter",
        summary="Get meter",
        tags=["Meter"],
        description=METER_RATE,
        responses={200: MeterSerializer, **_errors(404)},
    ),
    create=extend_schema(
        operation_id="createMeter",
        summary="Create meter",
        tags=["Meter"],
        description=(
            "Create a meter for the meter type given by meterTypeId or by its externalRef. One meter per "
            f"(meter type, meterKey, userId): a duplicate is 409 METER_EXISTS. {METER_RATE}"
        ),
        request=MeterCreateSerializer,
        responses={201: MeterSerializer, **_errors(404, 409)},
    ),
    partial_update=extend_schema(
        operation_id="updateMeter",
        summary="Update meter",
        tags=["Meter"],
        description=METER_RATE,
        request=MeterUpdateSerializer,
        responses={200: MeterSerializer, **_errors(404)},
    ),
    destroy=extend_schema(
        operation_id="deleteMeter",
        summary="Delete meter",
        tags=["Meter"],
        description=METER_RATE,
        responses={200: DeletedSerializer, **_errors(404)},
    ),
    records=extend_schema(
        operation_id="listMeterRecords",
        summary="List meter records",
        tags=["Meter"],
        description=f"The meter's flushed periods (metered records), newest first by default. {METER_RATE}",
        parameters=[
            *PAGE_PARAMETERS[:2],
            _sort_parameter(RECORD_SORT, "periodStart"),
            OpenApiParameter("sortOrder", str, enum=["ASC", "DESC"], description="Default DESC."),
        ],
        responses={
            200: inline_serializer("MeteredRecordList", {"records": MeteredRecordSerializer(many=True)}),
            **_errors(404),
        },
    ),
)
class MeterViewSet(AccountScopedViewSet):
    queryset = selectors.meters_with_types()
    serializer_class = MeterSerializer
    list_key = "meters"
    sort_fields = METER_SORT
    not_found_code = MeterNotFound.code
    not_found_message = MeterNotFound.message
    throttle_group = "meters"
    required_scopes = {
        "list": ["usage-metering:read:meters"],
        "retrieve": ["usage-metering:read:meters"],
        "records": ["usage-metering:read:meters"],
        "create": ["usage-metering:create:meters"],
        "partial_update": ["usage-metering:update:meters"],
        "destroy": ["usage-metering:delete:meters"],
    }

    def filter_list(self, queryset):
        params = self.request.query_params
        if "meterTypeId" in params:  # an empty value is not a uuid either: 400, as the schema says
            try:
                queryset = queryset.filter(meter_type_id=uuid.UUID(params["meterTypeId"]))
            except ValueError:
                raise ValidationFailed.for_field("meterTypeId", "meterTypeId must be a UUID.")
        if params.get("meterKey"):
            queryset = queryset.filter(meter_key=params["meterKey"])
        if params.get("userId"):
            queryset = queryset.filter(user_id=params["userId"])
        return queryset

    def _answer(self, meter, status_code=status.HTTP_200_OK) -> Response:
        return Response(MeterSerializer(self.get_queryset().get(pk=meter.pk)).data, status=status_code)

    def create(self, request):
        serializer = MeterCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        meter = services.meter_create(account_id=self.account_id, **serializer.validated_data)
        return self._answer(meter, status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        meter = self.get_object()
        serializer = MeterUpdateSerializer(meter, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        return self._answer(services.meter_update(meter=meter, data=serializer.validated_data))

    def destroy(self, request, pk=None):
        return Response({"deletedCount": services.meter_delete(meter=self.get_object())})

    @action(detail=True, methods=["get"])
    def records(self, request, pk=None):
        records = selectors.metered_records_of_meter(meter=self.get_object())
        params = request.query_params.copy()
        params.setdefault("sortOrder", "DESC")  # newest period first unless asked otherwise
        records = sort_queryset(records, params, fields=RECORD_SORT, default="periodStart")
        return Response(
            {"records": MeteredRecordSerializer(paginate(records, request.query_params), many=True).data}
        )
