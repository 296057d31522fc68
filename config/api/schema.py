"""OpenAPI helpers: the shared error body, per-status error responses and the API's own AutoSchema.

``ApiAutoSchema`` (``DEFAULT_SCHEMA_CLASS``) documents, on every operation, the statuses the shared
conventions of ``config/api`` can answer whatever the view does (401/403 from authentication and
scopes, 404 for an id in the path, 400/415 for query parameters and bodies, 413 from the body limit,
429 from rate limits, 500/503), so a view declares only its own (409, 404 of a lookup…) and a new
endpoint cannot forget one.
"""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.drainage import has_override
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import is_list_serializer
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from config.api.pagination import MAX_LIMIT, MAX_SKIP


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
    415: "Unsupported media type: send Content-Type: application/json.",
    429: "Too many requests (Retry-After and RateLimit-* headers).",
    500: "Unexpected internal error.",
    503: "A dependency is unavailable (Retry-After).",
}


def ERROR_RESPONSES(*statuses: int) -> dict[int, OpenApiResponse]:
    return {
        status: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[status]) for status in statuses
    }


# The statuses every authenticated endpoint can answer besides its own.
COMMON_STATUSES = (400, 401, 403, 413, 429, 500, 503)

# Headers the shared conventions put on an answer (``config.api.ratelimit``, ``config.api.errors``).
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[0-9]+$"},
}
_RESPONSE_HEADERS = {
    "429": {
        "Retry-After": _RETRY_AFTER,
        "RateLimit-Limit": {"description": "The bucket's burst.", "schema": {"type": "string"}},
        "RateLimit-Remaining": {"description": "Requests left in the bucket.", "schema": {"type": "string"}},
        "RateLimit-Reset": {
            "description": "Seconds until a request is allowed.",
            "schema": {"type": "string"},
        },
    },
    "503": {"Retry-After": _RETRY_AFTER},
}


# The extension a header parameter carries when a value it does not accept is a 403 (seed 001's
# identity headers: a mismatch with the credential), not a 400.
FORBIDDEN_WHEN_MISMATCHED = "x-forbidden-when-mismatched"


def implied_error_statuses(operation: dict[str, Any]) -> set[int]:
    """The statuses ``config/api`` can answer for this operation, whatever its view does."""
    statuses = {413, 429, 500, 503}  # body limit (middleware), rate limits, unexpected error, dependency down
    if any(requirement for requirement in operation.get("security") or []):
        statuses |= {401, 403}  # no or bad credentials; missing scope, X-Account-Id mismatch
    locations = {
        parameter.get("in")
        for parameter in operation.get("parameters") or []
        if not parameter.get(FORBIDDEN_WHEN_MISMATCHED)
    }
    if "path" in locations:
        statuses.add(404)  # unknown, malformed or another account's id
    if "query" in locations or "header" in locations:
        statuses.add(400)
    if operation.get("requestBody"):
        statuses |= {400, 415}  # malformed or invalid body; a Content-Type no parser takes
    return statuses


# The characters Python calls whitespace (``str.isspace``: what ``strip()`` and ``split()`` remove), as
# the body of a pattern's character class. Spelled out because ``\s`` differs between Python and the
# ECMA-262 patterns of JSON Schema (\x1c-\x1f and \x85 are whitespace only to Python, \ufeff only to ECMA).
WHITESPACE_CLASS = r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# What a trimmed text field refuses as blank, said as JSON Schema: at least one non-space character.
NOT_BLANK_PATTERN = f"[^{WHITESPACE_CLASS}]"


def _refuse_blank(field: serializers.Field, schema: dict[str, Any]) -> None:
    """A text field DRF trims before refusing a blank value ("  ") needs a non-space: say so."""
    if not (
        isinstance(field, serializers.CharField)
        and field.trim_whitespace
        and not field.allow_blank
        and schema.get("type") == "string"
        and "enum" not in schema
        and not has_override(field, "field")
    ):
        return
    if "pattern" in schema:
        schema.setdefault("allOf", []).append({"pattern": NOT_BLANK_PATTERN})
    else:
        schema["pattern"] = NOT_BLANK_PATTERN


class ApiAutoSchema(AutoSchema):
    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request":
            from config.api.serializers import StrictSerializerMixin

            if isinstance(serializer, StrictSerializerMixin) or getattr(
                serializer, "refuses_unknown_fields", False
            ):
                schema["additionalProperties"] = False  # unknown fields are a 400, never stored
            one_of_required = getattr(serializer, "requires_one_of", None)
            if one_of_required:
                schema["anyOf"] = [{"required": [name]} for name in one_of_required]
            exactly_one_required = getattr(serializer, "requires_exactly_one_of", None)
            if exactly_one_required:
                schema["oneOf"] = [{"required": [name]} for name in exactly_one_required]
            for name, field in serializer.fields.items():
                field_schema = schema.get("properties", {}).get(name)
                if field_schema is not None:
                    _refuse_blank(field, field_schema)
                    if isinstance(field, serializers.ListField) and "items" in field_schema:
                        _refuse_blank(field.child, field_schema["items"])
        return schema

    def resolve_serializer(self, serializer, direction, bypass_extensions=False):
        # drf-spectacular documents every PATCH body as partial (no field required); a serializer
        # that its view validates whole (``patch_is_partial = False``) is documented as it is checked.
        if getattr(serializer, "partial", False) and getattr(serializer, "patch_is_partial", True) is False:
            serializer = copy.copy(serializer)
            serializer.partial = False
        return super().resolve_serializer(serializer, direction, bypass_extensions)

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        if isinstance(serializer, dict):
            return (
                schema,
                True,
            )  # a body given as a JSON Schema is what a hot-path view decodes: never optional
        # A body that must name one of several optional fields cannot be left out either.
        return schema, required or bool(
            getattr(serializer, "requires_one_of", None)
            or getattr(serializer, "requires_exactly_one_of", None)
        )

    def _is_list_view(self, serializer=None) -> bool:
        # AccountScopedViewSet.list answers ``{list_key: [...]}``, an object: never wrap it in an array.
        from config.api.viewsets import AccountScopedViewSet

        if isinstance(self.view, AccountScopedViewSet) and not is_list_serializer(serializer):
            return False
        return super()._is_list_view(serializer)

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        # _is_list_view is False for our wrapped lists, which would name list and retrieve alike.
        if getattr(self.view, "action", None) == "list" and operation_id.endswith("_retrieve"):
            operation_id = operation_id.removesuffix("_retrieve") + "_list"
        return operation_id

    def get_override_parameters(self):
        # What the view's authentication reads besides credentials (seed 001's X-Account-Id /
        # X-Application-Id), declared by the authentication class itself: one place for every operation.
        parameters = list(super().get_override_parameters())
        for authenticator in self.view.get_authenticators():
            parameters.extend(getattr(authenticator, "openapi_parameters", ()))
        return parameters

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in sorted(implied_error_statuses(operation)):
            code = str(status)
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[status]), code
                )
        for code, headers in _RESPONSE_HEADERS.items():
            if code in responses:
                responses[code].setdefault("headers", {}).update(headers)
        operation["responses"] = dict(sorted(responses.items()))
        return operation


def page_parameters(
    sort_fields: dict[str, str] | None = None,
    default_sort: str | None = None,
) -> list[OpenApiParameter]:
    """``limit``/``skip`` (and ``sortBy``/``sortOrder``) exactly as ``config.api.pagination`` checks them."""
    parameters = [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            description=f"Items to return, 1 to {MAX_LIMIT} (default 20).",
        ),
        OpenApiParameter(
            "skip",
            {"type": "integer", "minimum": 0, "maximum": MAX_SKIP},
            description="Items to skip (default 0).",
        ),
    ]
    if sort_fields is not None:
        parameters += [
            OpenApiParameter(
                "sortBy",
                OpenApiTypes.STR,
                enum=sorted(sort_fields),
                description=f"Sort field (default {default_sort}).",
            ),
            OpenApiParameter("sortOrder", OpenApiTypes.STR, enum=["ASC", "DESC"], description="Default ASC."),
        ]
    return parameters


def without_slash_aliases(endpoints: list, **kwargs) -> list:
    """drf-spectacular preprocessing hook: drop ``/path/`` where ``/path`` is served too."""
    paths = {path for path, *_ in endpoints}
    return [
        endpoint
        for endpoint in endpoints
        if not (endpoint[0].endswith("/") and endpoint[0].rstrip("/") in paths and endpoint[0] != "/")
    ]


def seed_request_examples(result: dict, generator=None, request=None, public=None) -> dict:
    """drf-spectacular postprocessing hook: the seeds' request samples (``config.api.seed_samples``)
    as the named examples of their operations' JSON bodies. A sample for an operation the schema does
    not have, or one without a JSON body, fails the generation: the table cannot go stale."""
    from config.api.seed_samples import SEED_REQUEST_SAMPLES

    for key, samples in SEED_REQUEST_SAMPLES.items():
        method, _, path = key.partition(" ")
        operation = result.get("paths", {}).get(path, {}).get(method.lower())
        if operation is None:
            raise ValueError(f"Seed sample for {key}: the schema has no such operation.")
        try:
            media = operation["requestBody"]["content"]["application/json"]
        except KeyError:
            raise ValueError(f"Seed sample for {key}: the operation has no JSON request body.") from None
        media["examples"] = {
            f"seed{sample.seed}": {
                "summary": f"Seed {sample.seed}'s request sample",
                **({"description": sample.note} if sample.note else {}),
                "value": sample.value,
            }
            for sample in samples
        }
    return result
