"""``POST /online-collection/collectors/{id}/data``: the send-data hot route (``config.hot``).

It does the least work that keeps the promise: the pipeline authenticates (cached in-process),
checks the scope and takes a rate-limit token; ``decode`` reads the body once with msgspec (the
``data`` value is kept as the raw JSON text, never parsed per event); ``handle`` checks the
collector (cached in-process) and stores the batch with one INSERT in autocommit. On the event
loop ``collection.api.ingest_asgi`` does the INSERT for a cached collector. DRF is used only to
document it (``SendDataSchemaView``), never on the request path.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import msgspec
from django.conf import settings
from django.urls import resolve
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.views import APIView

from collection import services
from collection.api import ingest_asgi
from collection.api.serializers import SendDataRequestSerializer, SendDataResponseSerializer
from collection.exceptions import CollectorNotFound
from config.api.errors import ValidationFailed
from config.api.parsers import MalformedJson
from config.api.principal import Principal
from config.api.schema import ERROR_RESPONSES, NOT_BLANK_PATTERN
from config.hot.pipeline import Answer, Call, HotRoute

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


def _idempotency_key(headers) -> str | None:
    key = headers.get("idempotency-key")
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


@dataclass(frozen=True, slots=True)
class SendDataWork:
    collector_id: uuid.UUID
    payload: str
    size_bytes: int
    idempotency_key: str | None


def decode(call: Call) -> SendDataWork:
    """The collector's id (404 when it is not a UUID), the body's ``data`` (400) and the
    idempotency key (400), checked in that order."""
    collector_id = _collector_uuid(call.params["id"])
    payload, size_bytes = decode_send_data(call.body)
    return SendDataWork(collector_id, payload, size_bytes, _idempotency_key(call.headers))


def handle(principal: Principal, work: SendDataWork) -> Answer:
    """Store the body's ``data`` as one collected batch and answer its ``ingestionId``.

    Database errors are not caught here: the pipeline answers OperationalError with a JSON 503
    and Retry-After, and nothing was stored unless the INSERT committed.
    """
    result = services.collected_batch_append(
        account_id=principal.account_id,
        collector_id=work.collector_id,
        payload=work.payload,
        size_bytes=work.size_bytes,
        idempotency_key=work.idempotency_key,
    )
    return ingest_asgi.ingestion_answer(result.ingestion_id, replayed=result.replayed)


class SendDataSchemaView(APIView):
    """Documents send data in OpenAPI. The URL is served by ``SEND_DATA``'s view; routing this
    class instead would work too (it delegates), only slower."""

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
        return resolve(request._request.path_info).func(request._request, id=id)


SEND_DATA = HotRoute(
    path="online-collection/collectors/<str:id>/data",
    name="collector-send-data",
    scopes=("online-collection:ingest:collectors",),
    rate_group="send_data",
    decode=decode,
    handle=handle,
    settle_on_loop=ingest_asgi.settle_on_loop,
    handle_on_loop=ingest_asgi.append_on_loop,
    schema_view=SendDataSchemaView,
)
