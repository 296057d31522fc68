"""OpenAPI helpers: the shared error body and per-status error responses."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    field = serializers.CharField()
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """The error body of every status: ``{"code", "message", "details"}``."""

    code = serializers.CharField()
    message = serializers.CharField()
    details = ErrorDetailSerializer(many=True)

_DESCRIPTIONS = {
    400: "Bad request (validation error).",
    401: "Unauthorized: missing, unknown or expired credentials.",
    403: "Forbidden: INSUFFICIENT_SCOPE, or X-Account-Id / X-Application-Id mismatch.",
    404: "Not found (also for another account's id).",
    405: "Method not allowed.",
    409: "Conflict.",
    413: "Request body too large.",
    429: "Too many requests (Retry-After and RateLimit-* headers).",
    500: "Unexpected internal error.",
    503: "A dependency is unavailable (Retry-After).",
}


def ERROR_RESPONSES(*statuses: int) -> dict[int, OpenApiResponse]:  # noqa: N802 - reads as a constant
    return {status: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[status]) for status in statuses}


# The statuses every authenticated endpoint can answer besides its own.
COMMON_STATUSES = (400, 401, 403, 413, 429, 500, 503)
