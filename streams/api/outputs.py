"""A stream's output deliveries and health, read through the API: ``GET /streams/{id}/deliveries``
and ``GET /streams/{id}/health``. Thin: look the stream up in the caller's account, call a
selector, shape."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.errors import ValidationFailed
from config.api.pagination import page_from
from config.api.schema import COMMON_STATUSES, ERROR_RESPONSES, page_parameters
from streams.api.serializers import (
    OutputDeliveryListSerializer,
    OutputDeliverySerializer,
    StreamHealthSerializer,
)
from streams.engine import selectors as engine_selectors
from streams.exceptions import StreamNotFound
from streams.models import OutputDelivery, Stream

READ = ["stream-management:read:streams"]
LIMIT_PARAMETER, SKIP_PARAMETER = page_parameters()
ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The stream's id."
)


def _stream(request, stream_id: str) -> Stream:
    """The stream in the caller's account; unknown, malformed or another account's id: 404."""
    try:
        pk = uuid.UUID(str(stream_id))
    except ValueError:
        raise StreamNotFound()
    stream = Stream.objects.filter(pk=pk, account_id=request.auth.account_id).first()
    if stream is None:
        raise StreamNotFound()
    return stream


def _errors(*statuses: int) -> dict:
    return ERROR_RESPONSES(*sorted(set(COMMON_STATUSES) | set(statuses)))


class StreamDeliveriesView(APIView):
    required_scopes = {"GET": READ}
    throttle_group = "streams"

    @extend_schema(
        operation_id="streams_deliveries_list",
        summary="List a stream's output deliveries",
        description=(
            "What the stream's output nodes (httpForwarder) send, newest first: each delivery is one request of "
            "up to 500 records, sent after the run that wrote it committed, in order per output node, with "
            "retries (exponential backoff with jitter); its deliveryId is the Delivery-Id header of every "
            "attempt. status PENDING (waiting, or retrying), DELIVERED, or DEAD (the dead letter, after the last "
            "attempt; the admin's Retry now sends it again). Delivered ones are kept 7 days."
        ),
        parameters=[
            ID_PARAMETER,
            OpenApiParameter("status", {"type": "string", "enum": OutputDelivery.Status.values}),
            OpenApiParameter("nodeId", str, description="Only the deliveries of this output node."),
            SKIP_PARAMETER,
            LIMIT_PARAMETER,
        ],
        responses={200: OutputDeliveryListSerializer, **_errors(404)},
    )
    def get(self, request, id: str):
        stream = _stream(request, id)
        status = request.query_params.get("status")
        if status is not None and status not in OutputDelivery.Status.values:
            raise ValidationFailed.for_field(
                "status", f"status must be one of: {', '.join(OutputDelivery.Status.values)}."
            )
        page = page_from(request.query_params)
        deliveries = engine_selectors.output_deliveries_list(
            stream=stream, status=status, node_id=request.query_params.get("nodeId")
        )
        return Response(
            {
                "total": deliveries.count(),
                "deliveries": OutputDeliverySerializer(
                    deliveries.defer("body")[page.skip : page.skip + page.limit], many=True
                ).data,
            }
        )


class StreamHealthView(APIView):
    required_scopes = {"GET": READ}
    throttle_group = "streams"

    @extend_schema(
        operation_id="streams_health",
        summary="Get a stream's health",
        description=(
            "state: healthy, lagging (its oldest unconsumed collected batch is older than "
            "STREAM_LAG_WARNING_SECONDS, plus the schedule's interval for a batch stream), output failing (an "
            "output's oldest delivery is failing its attempts, or a dead letter is younger than 24 hours) or "
            "failing (its latest run failed). errors: recent run failures and output errors, identical messages "
            "collapsed into one line with a count."
        ),
        parameters=[ID_PARAMETER],
        responses={200: StreamHealthSerializer, **_errors(404)},
    )
    def get(self, request, id: str):
        return Response(
            StreamHealthSerializer(engine_selectors.stream_health(stream=_stream(request, id))).data
        )
