"""``/data-corrections``: usage records the ledger refused, to correct and reprocess or discard."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api.errors import ValidationFailed
from config.api.schema import ERROR_RESPONSES, page_parameters
from config.api.serializers import StrictSerializerMixin
from config.api.viewsets import AccountScopedViewSet
from metering import corrections
from metering.api.serializers import CamelCaseModelSerializer, ObjectField
from metering.models import DataCorrection

READ = ["usage-metering:read:data_corrections"]
WRITE = ["usage-metering:write:data_corrections"]
TAGS = ["Data correction"]
RATE = "Rate limit: 20/s per client, burst 10."
SORT = {"createdAt": "created_at", "updatedAt": "updated_at", "reason": "reason", "status": "status"}


class DataCorrectionSerializer(CamelCaseModelSerializer):
    """A refused usage record, its reason and what became of it."""

    record = ObjectField(read_only=True)

    class Meta:
        model = DataCorrection
        fields = [
            "attempts",
            "createdAt",
            "id",
            "idempotencyKey",
            "message",
            "node",
            "reason",
            "record",
            "resolvedAt",
            "source",
            "sourceRef",
            "status",
            "updatedAt",
        ]
        read_only_fields = fields


class DataCorrectionUpdateSerializer(StrictSerializerMixin, serializers.Serializer):
    patch_is_partial = False  # PATCH replaces the record: it is required (config.api.schema)

    record = ObjectField(help_text="The corrected record (same shape as the source sent it).")


class DataCorrectionIdsSerializer(StrictSerializerMixin, serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.CharField(max_length=36, trim_whitespace=False),
        min_length=1,
        max_length=corrections.MAX_BULK,
    )


ReprocessedSerializer = inline_serializer(
    "DataCorrectionsReprocessed",
    {
        "reprocessed": serializers.IntegerField(),
        "stillOpen": serializers.IntegerField(),
        "discarded": serializers.IntegerField(),
        "dataCorrections": DataCorrectionSerializer(many=True),
    },
)
DiscardedSerializer = inline_serializer("DataCorrectionsDiscarded", {"discarded": serializers.IntegerField()})


@extend_schema_view(
    list=extend_schema(
        operation_id="listDataCorrections",
        summary="List data corrections",
        tags=TAGS,
        description=f"Refused usage records. {RATE}",
        parameters=[
            OpenApiParameter("reason", str, enum=DataCorrection.Reason.values),
            OpenApiParameter("status", str, enum=DataCorrection.Status.values),
            OpenApiParameter("source", str),
            *page_parameters(),  # limit/skip with the bounds config.api.pagination checks
            OpenApiParameter("sortBy", str, enum=sorted(SORT), description="Default createdAt."),
            OpenApiParameter("sortOrder", str, enum=["ASC", "DESC"]),
        ],
        responses={
            200: inline_serializer(
                "DataCorrectionList", {"dataCorrections": DataCorrectionSerializer(many=True)}
            ),
            **ERROR_RESPONSES(400, 401, 403, 413, 429, 500, 503),
        },
    ),
    retrieve=extend_schema(
        operation_id="getDataCorrection",
        summary="Get data correction",
        tags=TAGS,
        description=RATE,
        responses={200: DataCorrectionSerializer, **ERROR_RESPONSES(401, 403, 404, 413, 429, 500, 503)},
    ),
    partial_update=extend_schema(
        operation_id="updateDataCorrection",
        summary="Update data correction",
        tags=TAGS,
        request=DataCorrectionUpdateSerializer,
        description=f"Replace the record of an OPEN correction (409 DATA_CORRECTION_NOT_OPEN otherwise). {RATE}",
        responses={
            200: DataCorrectionSerializer,
            **ERROR_RESPONSES(400, 401, 403, 404, 409, 413, 429, 500, 503),
        },
    ),
    reprocess=extend_schema(
        operation_id="reprocessDataCorrection",
        summary="Reprocess data correction",
        tags=TAGS,
        request=None,
        description=(
            "Send the record through the ledger again, with its original idempotency key: REPROCESSED "
            "when counted (or counted meanwhile), still OPEN with the new reason when refused again, "
            f"DISCARDED when a filtering rule excludes it. 409 unless OPEN. {RATE}"
        ),
        responses={200: DataCorrectionSerializer, **ERROR_RESPONSES(401, 403, 404, 409, 413, 429, 500, 503)},
    ),
    reprocess_many=extend_schema(
        operation_id="reprocessDataCorrections",
        summary="Reprocess data corrections",
        tags=TAGS,
        request=DataCorrectionIdsSerializer,
        description=f"Reprocess several corrections (those not OPEN are left as they are). 404 if any id is unknown. {RATE}",
        responses={200: ReprocessedSerializer, **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503)},
    ),
    discard=extend_schema(
        operation_id="discardDataCorrections",
        summary="Discard data corrections",
        tags=TAGS,
        request=DataCorrectionIdsSerializer,
        description=f"Give up on OPEN corrections: they are kept, marked DISCARDED. 404 if any id is unknown. {RATE}",
        responses={200: DiscardedSerializer, **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503)},
    ),
)
class DataCorrectionViewSet(AccountScopedViewSet):
    queryset = DataCorrection.objects.all()
    serializer_class = DataCorrectionSerializer
    list_key = "dataCorrections"
    sort_fields = SORT
    not_found_code = corrections.DataCorrectionNotFound.code
    not_found_message = corrections.DataCorrectionNotFound.message
    throttle_group = "config"
    required_scopes = {
        "list": READ,
        "retrieve": READ,
        "partial_update": WRITE,
        "reprocess": WRITE,
        "reprocess_many": WRITE,
        "discard": WRITE,
    }

    def filter_list(self, queryset):
        params = self.request.query_params
        for name, choices in (
            ("reason", DataCorrection.Reason.values),
            ("status", DataCorrection.Status.values),
        ):
            value = params.get(name)
            if name in params:  # an empty value is no filter value either: 400, as the enum says
                if value not in choices:
                    raise ValidationFailed.for_field(name, f"{name} must be one of: {', '.join(choices)}.")
                queryset = queryset.filter(**{name: value})
        if params.get("source"):
            queryset = queryset.filter(source=params["source"])
        return queryset

    def partial_update(self, request, pk=None):
        serializer = DataCorrectionUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        correction = corrections.data_correction_update(
            correction=self.get_object(), record=serializer.validated_data["record"]
        )
        return Response(DataCorrectionSerializer(correction).data)

    @action(detail=True, methods=["post"])
    def reprocess(self, request, pk=None):
        return Response(
            DataCorrectionSerializer(corrections.data_correction_reprocess(correction=self.get_object())).data
        )

    def _ids(self, request) -> list[str]:
        serializer = DataCorrectionIdsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data["ids"]

    @action(detail=False, methods=["post"], url_path="reprocess")
    def reprocess_many(self, request):
        result = corrections.data_corrections_reprocess(
            account_id=self.account_id, correction_ids=self._ids(request)
        )
        return Response(
            {
                "reprocessed": result.reprocessed,
                "stillOpen": result.still_open,
                "discarded": result.discarded,
                "dataCorrections": DataCorrectionSerializer(result.corrections, many=True).data,
            }
        )

    @action(detail=False, methods=["post"])
    def discard(self, request):
        return Response(
            {
                "discarded": corrections.data_corrections_discard(
                    account_id=self.account_id, correction_ids=self._ids(request)
                )
            }
        )
