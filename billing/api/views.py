"""Seed 004's meter subscription lookups: which active subscriptions can report usage to a meter."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from billing import selectors
from billing.api.serializers import MeterSubscriptionsSerializer
from config.api.schema import ERROR_RESPONSES
from metering.compat import billing
from metering.compat.views import BILLING, REPORT_SCOPES, AmberfloView


class MeterSubscriptionsView(AmberfloView):
    required_scopes = {"GET": REPORT_SCOPES}
    throttle_group = "billing"

    @extend_schema(
        operation_id="listMeterSubscriptionsById",
        summary="List meter subscriptions by ID",
        tags=BILLING,
        description=(
            "Subscriptions (with their products) that can report usage to this meter: active "
            "ones holding a product whose price is linked to it. Empty when none. 404 "
            "METER_NOT_FOUND, 403 LICENSE.REQUIRED. Scope meter-report."
        ),
        parameters=[OpenApiParameter("meterId", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={
            200: MeterSubscriptionsSerializer,
            **ERROR_RESPONSES(401, 403, 404, 413, 429, 500, 503),
        },
    )
    def get(self, request, meterId: str):
        selectors.check_license(self.account_id)
        meter_type = billing.meter_for_report(account_id=self.account_id, meter_id=meterId, meter_name=None)
        return Response(selectors.meter_subscriptions(meter_type=meter_type))


class MeterSubscriptionsByNameView(AmberfloView):
    required_scopes = {"GET": REPORT_SCOPES}
    throttle_group = "billing"

    @extend_schema(
        operation_id="listMeterSubscriptionsByName",
        summary="List meter subscriptions by name",
        tags=BILLING,
        parameters=[
            OpenApiParameter(
                "meterName",
                {"type": "string", "minLength": 1},
                required=True,
                description="The meter's apiName (or name), e.g. api_calls.",
            )
        ],
        description=(
            "As the lookup by id, for a meter named by ?meterName=. 400 "
            "METER_IDENTIFIER_REQUIRED without it, 404 METER_NOT_FOUND, 403 LICENSE.REQUIRED. "
            "Scope meter-report."
        ),
        responses={
            200: MeterSubscriptionsSerializer,
            **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503),
        },
    )
    def get(self, request):
        selectors.check_license(self.account_id)
        meter_type = billing.meter_for_report(
            account_id=self.account_id,
            meter_id=None,
            meter_name=request.query_params.get("meterName") or None,
        )
        return Response(selectors.meter_subscriptions(meter_type=meter_type), status=status.HTTP_200_OK)
