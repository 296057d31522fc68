"""Global parameters API (seed 000): declarative; every write goes through ``parameters.services``."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from config.api.schema import ERROR_RESPONSES, ApiAutoSchema, ErrorSerializer, page_parameters
from config.api.viewsets import AccountScopedViewSet
from parameters import services
from parameters.api.serializers import (
    ParameterCreateSerializer,
    ParameterListSerializer,
    ParameterNameSerializer,
    ParametersDeletedSerializer,
    ParametersDeleteSerializer,
    ParameterSerializer,
    ParameterUpdateSerializer,
)
from parameters.models import Parameter


class DeleteWithBodySchema(ApiAutoSchema):
    """drf-spectacular documents request bodies for PUT/PATCH/POST only; DELETE /parameters has one."""

    def _get_request_body(self, direction="request"):
        if self.method != "DELETE":
            return super()._get_request_body(direction)
        self.method = "POST"
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"


NAME_PATH_PARAMETER = OpenApiParameter(
    "name",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The parameter's full name; it may contain slashes (credentials/payment-gateway/api-key).",
)
SORT_FIELDS = {"name": "name", "description": "description", "updatedAt": "updated_at"}
LIST_PARAMETERS = [
    *page_parameters(SORT_FIELDS, "name"),
    OpenApiParameter("name", OpenApiTypes.STR, description="Full or partial name (case-insensitive)."),
]


class ParameterViewSet(AccountScopedViewSet):
    """``/parameters`` and ``/parameters/{name}``: names are the identifiers and may contain slashes."""

    queryset = Parameter.objects.all()
    serializer_class = ParameterSerializer
    schema = DeleteWithBodySchema()
    list_key = "parameters"
    sort_fields = SORT_FIELDS
    default_sort = "name"
    lookup_field = "name"
    lookup_value_is_uuid = False
    not_found_code = "PARAMETER_NOT_FOUND"
    not_found_message = "Parameter not found."
    required_scopes = {
        "list": ["global-parameters:read:parameters"],
        "retrieve": ["global-parameters:read:parameters"],
        "create": ["global-parameters:create:parameters"],
        "partial_update": ["global-parameters:update:parameters"],
        "bulk_destroy": ["global-parameters:delete:parameters"],
    }
    throttle_group = {"bulk_destroy": "parameters_delete", "*": "parameters"}

    def filter_list(self, queryset):
        name = self.request.query_params.get("name")
        return queryset.filter(name__icontains=name) if name else queryset

    @extend_schema(
        summary="List parameters",
        description="The account's parameters, sorted and paginated; the value of a sensitive parameter is left out.",
        parameters=LIST_PARAMETERS,
        responses={200: ParameterListSerializer, **ERROR_RESPONSES(400, 401, 403, 429, 500, 503)},
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Create parameter",
        description="At most 100 parameters per account. A sensitive value is encrypted at rest and never returned.",
        request=ParameterCreateSerializer,
        responses={
            201: ParameterNameSerializer,
            409: OpenApiResponse(
                ErrorSerializer, description="PARAMETER_ALREADY_EXISTS or PARAMETER_LIMIT_REACHED."
            ),
            **ERROR_RESPONSES(400, 401, 403, 413, 429, 500, 503),
        },
    )
    def create(self, request, *args, **kwargs):
        serializer = ParameterCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        parameter = services.parameter_create(account=self.account_id, **serializer.validated_data)
        return Response(
            {"name": parameter.name},
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/parameters/{parameter.name}"},
        )

    @extend_schema(
        summary="Get parameter",
        description="One parameter by its full name (which may contain slashes). A sensitive parameter is "
        "answered without its value.",
        parameters=[NAME_PATH_PARAMETER],
        responses={200: ParameterSerializer, **ERROR_RESPONSES(401, 403, 404, 429, 500, 503)},
    )
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Update parameter",
        description="Update the description, the value, or both (at least one). The type cannot be updated "
        "(400 PARAMETER_TYPE_IMMUTABLE).",
        parameters=[NAME_PATH_PARAMETER],
        request=ParameterUpdateSerializer,
        responses={200: ParameterNameSerializer, **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503)},
    )
    def partial_update(self, request, *args, **kwargs):
        parameter = self.get_object()
        serializer = ParameterUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        parameter = services.parameter_update(parameter=parameter, **serializer.validated_data)
        return Response({"name": parameter.name})

    @extend_schema(
        summary="Delete parameters",
        description="Deletes the named parameters; names the account does not hold are answered in "
        "invalidParameters.",
        request=ParametersDeleteSerializer,
        responses={200: ParametersDeletedSerializer, **ERROR_RESPONSES(400, 401, 403, 413, 429, 500, 503)},
    )
    def bulk_destroy(self, request, *args, **kwargs):
        serializer = ParametersDeleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.parameters_delete(
            account=self.account_id, names=serializer.validated_data["parameters"]
        )
        return Response(result.as_dict())
