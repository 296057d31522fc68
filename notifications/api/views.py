"""``/notification-endpoints``: webhook endpoints of the caller's account and their deliveries."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.models import Account
from config.api.errors import ValidationFailed
from config.api.pagination import paginate, sort_queryset
from config.api.schema import ERROR_RESPONSES, page_parameters
from config.api.viewsets import AccountScopedViewSet
from notifications import selectors, services
from notifications.api.serializers import (
    DeliverySerializer,
    NotificationEndpointCreatedSerializer,
    NotificationEndpointSerializer,
    NotificationEndpointWriteSerializer,
)
from notifications.models import Delivery, EventType, NotificationEndpoint

READ = ["usage-metering:read:notifications"]
WRITE = ["usage-metering:write:notifications"]
TAGS = ["Notifications"]
RATE = "Rate limit: 20/s per client, burst 10."
ENDPOINT_SORT = {"createdAt": "created_at", "updatedAt": "updated_at", "url": "url"}
DELIVERY_SORT = {"createdAt": "created_at", "updatedAt": "updated_at"}


@extend_schema_view(
    list=extend_schema(
        operation_id="listNotificationEndpoints",
        summary="List notification endpoints",
        tags=TAGS,
        parameters=page_parameters(ENDPOINT_SORT, "createdAt"),
        responses={
            200: inline_serializer(
                "NotificationEndpointList",
                {"notificationEndpoints": NotificationEndpointSerializer(many=True)},
            ),
            **ERROR_RESPONSES(400, 401, 403, 413, 429, 500, 503),
        },
        description=f"The account's webhook endpoints (secrets are never listed). {RATE}",
    ),
    retrieve=extend_schema(
        operation_id="getNotificationEndpoint",
        summary="Get notification endpoint",
        tags=TAGS,
        responses={200: NotificationEndpointSerializer, **ERROR_RESPONSES(401, 403, 404, 413, 429, 500, 503)},
        description=f"One webhook endpoint (without its secret). {RATE}",
    ),
    create=extend_schema(
        operation_id="createNotificationEndpoint",
        summary="Create notification endpoint",
        tags=TAGS,
        request=NotificationEndpointWriteSerializer,
        responses={
            201: NotificationEndpointCreatedSerializer,
            **ERROR_RESPONSES(400, 401, 403, 409, 413, 429, 500, 503),
        },
        description="Register a webhook endpoint. The URL must be http(s) on a public address "
        "(400 TARGET_NOT_ALLOWED otherwise). The answer carries the signing secret "
        f"(whsec_…): the only time it is shown. 409 NOTIFICATION_ENDPOINT_LIMIT_REACHED. {RATE}",
    ),
    partial_update=extend_schema(
        operation_id="updateNotificationEndpoint",
        summary="Update notification endpoint",
        tags=TAGS,
        request=NotificationEndpointWriteSerializer,
        responses={
            200: NotificationEndpointSerializer,
            **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503),
        },
        description=f"Change url, eventTypes, description or isActive. A new URL is checked again. {RATE}",
    ),
    destroy=extend_schema(
        operation_id="deleteNotificationEndpoint",
        summary="Delete notification endpoint",
        tags=TAGS,
        responses={204: None, **ERROR_RESPONSES(401, 403, 404, 413, 429, 500, 503)},
        description=f"Delete the endpoint with its deliveries. {RATE}",
    ),
    deliveries=extend_schema(
        operation_id="listNotificationDeliveries",
        summary="List notification deliveries",
        tags=TAGS,
        parameters=[
            *page_parameters(DELIVERY_SORT, "createdAt"),
            OpenApiParameter("status", str, enum=Delivery.Status.values),
        ],
        responses={
            200: inline_serializer("NotificationDeliveryList", {"deliveries": DeliverySerializer(many=True)}),
            **ERROR_RESPONSES(400, 401, 403, 404, 413, 429, 500, 503),
        },
        description=f"The endpoint's deliveries with every attempt, optionally filtered by status. {RATE}",
    ),
)
class NotificationEndpointViewSet(AccountScopedViewSet):
    queryset = NotificationEndpoint.objects.all()
    serializer_class = NotificationEndpointSerializer
    list_key = "notificationEndpoints"
    sort_fields = ENDPOINT_SORT
    not_found_code = "NOTIFICATION_ENDPOINT_NOT_FOUND"
    not_found_message = "Notification endpoint not found."
    required_scopes = {
        "list": READ,
        "retrieve": READ,
        "deliveries": READ,
        "create": WRITE,
        "partial_update": WRITE,
        "destroy": WRITE,
    }
    throttle_group = "config"

    def create(self, request, *args, **kwargs):
        data = NotificationEndpointWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        endpoint, secret = services.notification_endpoint_create(
            account=Account.objects.get(pk=self.account_id),
            url=values["url"],
            event_types=values.get("event_types", EventType.values),
            description=values.get("description", ""),
            is_active=values.get("is_active", True),
        )
        endpoint.secret = secret
        body = NotificationEndpointCreatedSerializer(endpoint).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    def partial_update(self, request, *args, **kwargs):
        endpoint = self.get_object()
        data = NotificationEndpointWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = services.notification_endpoint_update(endpoint=endpoint, **data.validated_data)
        return Response(NotificationEndpointSerializer(endpoint).data)

    def destroy(self, request, *args, **kwargs):
        services.notification_endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["get"], url_path="deliveries")
    def deliveries(self, request, *args, **kwargs):
        endpoint = self.get_object()
        queryset = selectors.deliveries_for_endpoint(endpoint_id=endpoint.pk, account_id=self.account_id)
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Delivery.Status.values:
                raise ValidationFailed.for_field(
                    "status", f"status must be one of: {', '.join(Delivery.Status.values)}."
                )
            queryset = queryset.filter(status=wanted)
        queryset = sort_queryset(queryset, request.query_params, fields=DELIVERY_SORT, default="createdAt")
        page = paginate(queryset, request.query_params)
        return Response({"deliveries": DeliverySerializer(page, many=True).data})
