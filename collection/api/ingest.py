"""``POST /online-collection/collectors/{id}/data``: the send-data hot path, a plain Django view.

It does the least work that keeps the promise: authenticate (cached in-process), check the scope,
take a rate-limit token, decode the body once with msgspec (the ``data`` value is kept as the raw
JSON text, never parsed per event), check the collector (cached in-process), one INSERT in
autocommit, and answer. DRF is used only to document it (``SendDataSchemaView``), never on the
request path.
"""

from __future__ import annotations

import re
import uuid

import msgspec
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.views import APIView

from collection import services
from collection.api.serializers import SendDataRequestSerializer, SendDataResponseSerializer
from collection.exceptions import CollectorNotFound
from config.api.errors import ApiError, ValidationFailed, error_response
from config.api.parsers import MalformedJson
from config.api.permissions import require_scopes
from config.api.principal import principal_from_request
from config.api.ratelimit import enforce_rate_limit
from config.api.schema import ERROR_RESPONSES, NOT_BLANK_PATTERN

SEND_DATA_SCOPES = ("online-collection:ingest:collectors",)
IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
    "pattern": NOT_BLANK_PATTERN,
}


class SendDataBody(msgspec.Struct, forbid_unknown_fields=True):
    # Raw: msgspec checks the JSON is well formed and hands back the value's bytes unparsed.
    data: msgspec.Raw


_DECODER = msgspec.json.Decoder(SendDataBody)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_A_BRACKET = bytes(byte for byte in range(256) if byte not in b"[]{}")


def _nesting_exceeds(data: bytes, limit: int) -> bool:
    """True when arrays/objects nest deeper than ``limit`` in well-formed JSON ``data``.

    Counting brackets bounds the depth from above, which settles small bodies at C speed; only
    bodies with more brackets than ``limit`` are reduced to their bracket skeleton (strings
    removed) and peeled one innermost level per pass.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    skeleton = _JSON_STRING.sub(b"", data).translate(None, _NOT_A_BRACKET)
    for _ in range(limit):
        skeleton = _INNERMOST_PAIR.sub(b"", skeleton)
        if not skeleton:
            return False
    return True


def decode_send_data(body: bytes) -> tuple[str, int]:
    """The JSON text of the body's ``data`` value (a string, an object or an array) and its size
    in bytes, or a 400."""
    if not body:
        raise MalformedJson('The request body is empty; send {"data": …}.')
    try:
        data = bytes(_DECODER.decode(body).data)
    except msgspec.ValidationError as exc:
        message = str(exc)
        unknown = re.search(r"unknown field `([^`]*)`", message)
        if unknown:
            raise ValidationFailed.for_field(unknown.group(1), "Unknown field.")
        if "missing required field" in message:
            raise ValidationFailed.for_field("data", "data is required.")
        raise ValidationFailed.for_field("", 'The body must be a JSON object: {"data": …}.')
    except msgspec.DecodeError as exc:
        raise MalformedJson(f"The request body is not valid JSON: {exc}.")
    except RecursionError:
        raise ValidationFailed.for_field("data", "data is nested too deeply.", code="NESTING_TOO_DEEP")
    if data[:1] not in (b'"', b"{", b"["):
        raise ValidationFailed.for_field("data", "data must be a string, an object or an array.")
    if _nesting_exceeds(data, settings.COLLECTION_MAX_NESTING_DEPTH):
        raise ValidationFailed.for_field(
            "data",
            f"data nests arrays and objects deeper than {settings.COLLECTION_MAX_NESTING_DEPTH} levels.",
            code="NESTING_TOO_DEEP",
        )
    try:
        return data.decode("utf-8"), len(data)
    except UnicodeDecodeError:
        raise MalformedJson("The request body is not valid UTF-8.")


def _collector_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CollectorNotFound()


def _idempotency_key(request: HttpRequest) -> str | None:
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    key = key.strip()
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValidationFailed.for_field(
            "Idempotency-Key",
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters.",
            code="INVALID_IDEMPOTENCY_KEY",
        )
    return key


@csrf_exempt
def send_data(request: HttpRequest, id: str) -> HttpResponse:
    """Store the body's ``data`` as one collected batch and answer its ``ingestionId``.

    Database errors are not caught here: the API middleware answers OperationalError with a JSON
    503 and Retry-After, and nothing was stored unless the INSERT committed.
    """
    if request.method != "POST":
        return error_response(405, headers={"Allow": "POST"})
    try:
        principal = principal_from_request(request)
        require_scopes(principal, SEND_DATA_SCOPES)
        enforce_rate_limit("send_data", principal.client_key)
        collector_id = _collector_uuid(id)
        payload, size_bytes = decode_send_data(request.body)
        result = services.collected_batch_append(
            account_id=principal.account_id,
            collector_id=collector_id,
            payload=payload,
            size_bytes=size_bytes,
            idempotency_key=_idempotency_key(request),
        )
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    response = HttpResponse(
        b'{"ingestionId":"%s"}' % str(result.ingestion_id).encode("ascii"), content_type="application/json"
    )
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


class SendDataSchemaView(APIView):
    """Documents send data in OpenAPI. The URL is served by ``send_data``; routing this class
    instead would work too (it delegates), only slower."""

    @extend_schema(
        operation_id="sendData",
        tags=["Online collection ingestion"],
        summary="Send data",
        description=(
            "Submits usage records to the online collection storage for the collector. The body's `data` "
            "(a string, an object or an array) is stored durably as one collected batch before the answer; "
            "streams reading the collector consume batches in order.\n\n"
            "Requires the scope `online-collection:ingest:collectors`. Rate limit: 2000 requests per second "
            "per client, burst 5. Bodies over 1 MiB (API_MAX_BODY_BYTES) are refused with 413.\n\n"
            "Optional `Idempotency-Key` header: a replay with the same key and body answers the first "
            "`ingestionId` (with `Idempotent-Replayed: true`) and stores nothing; the same key with another "
            "body is 409 `IDEMPOTENCY_KEY_REUSED`."
        ),
        parameters=[
            OpenApiParameter(
                "id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The collector's id."
            ),
            OpenApiParameter(
                "Idempotency-Key",
                IDEMPOTENCY_KEY_SCHEMA,
                OpenApiParameter.HEADER,
                required=False,
                description="1–255 characters (not all spaces), unique per account.",
            ),
        ],
        request=SendDataRequestSerializer,
        responses={
            200: OpenApiResponse(SendDataResponseSerializer, description="Stored (or an idempotent replay)."),
            **ERROR_RESPONSES(400, 401, 403, 404, 405, 409, 413, 429, 500, 503),
        },
    )
    def post(self, request, id: str):
        return send_data(request._request, id)


# drf-spectacular documents URL callbacks carrying ``cls``; the request path stays plain Django.
send_data.cls = SendDataSchemaView
send_data.initkwargs = {}
