"""Send data under ASGI (``config/asgi.py``): the common request served on the event loop.

Under a WSGI worker every request blocks its process twice (the Redis rate-limit call and the
INSERT), and on a small machine waking processes costs more than the work. Under an ASGI worker
(gunicorn with ``uvicorn.workers.UvicornWorker``) one process keeps many requests in flight and
waits for all their round trips at once.

The fast path takes only requests whose every check is already settled in process memory: a
bearer token in the principal cache, a collector cached ACTIVE for that account, no
``Idempotency-Key``, no query string, a declared ``Content-Length`` within the limit (and
PostgreSQL: with the embedded SQLite database every request takes the view). It then
runs the same steps as the Django view (``collection.api.ingest.send_data``), with the same
helpers, in the same order: caller, scope, rate limit (``redis.asyncio``), body, append (one
INSERT on an asynchronous connection), answer. Any other request — a cache miss, a replay, an
oversized body — is handed, body and all, to Django's ASGI application, where the view answers it
exactly as under WSGI.
"""

from __future__ import annotations

import re
import time
import uuid

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections

from collection import services
from collection.api.ingest import SEND_DATA_SCOPES, decode_send_data
from collection.selectors import active_collectors
from config.api.errors import ApiError, error_response, exception_to_response
from config.api.permissions import require_scopes
from config.api.principal import checksum, principal_cache, principal_from_request
from config.api.ratelimit import enforce_rate_limit_async
from config.metrics import LATENCY, REQUESTS

SEND_DATA_PATH = re.compile(r"^/online-collection/collectors/([^/]+)/data$")
ROUTE = "online-collection/collectors/<str:id>/data"  # the metrics label the Django view gets


class _Headers:
    """What ``principal_from_request`` reads of a request: ``META``, built from ASGI headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.META = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


def application_with_fast_send_data(django_application):
    """The ASGI callable: send data's fast path in front of Django's ASGI application (on
    PostgreSQL; the embedded SQLite database leaves every request to Django)."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        return django_application

    async def application(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("query_string"):
            match = SEND_DATA_PATH.match(scope["path"])
            if match is not None:
                await _send_data(scope, receive, send, match.group(1), django_application)
                return
        await django_application(scope, receive, send)

    return application


def _settled(headers: dict[str, str], collector: str):
    """The collector id and body length when the request needs no synchronous work, else None."""
    if "idempotency-key" in headers:
        return None
    try:
        length = int(headers["content-length"])
    except (KeyError, ValueError):
        return None
    if not 0 < length <= settings.API_MAX_BODY_BYTES:
        return None
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    found, principal = principal_cache.get("t:" + checksum(token.strip()))
    if not found or principal is None:
        return None
    try:
        collector_id = uuid.UUID(collector)
    except ValueError:
        return None
    if active_collectors.get(collector_id) != principal.account_id:
        return None
    return collector_id, length


async def _send_data(scope, receive, send, collector: str, django_application) -> None:
    started = time.perf_counter()
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    settled = _settled(headers, collector)
    if settled is None:
        await django_application(scope, receive, send)
        return
    collector_id, length = settled
    body, complete = await _read_body(receive, length)
    if not complete:  # more than declared, or the client left: the view says what it says
        await django_application(scope, _replaying(body, receive), send)
        return
    try:
        principal = principal_from_request(_Headers(headers))  # cached: expiry and identity headers
        require_scopes(principal, SEND_DATA_SCOPES)
        await enforce_rate_limit_async("send_data", principal.client_key)
        payload, size_bytes = decode_send_data(body)
        result = await services.collected_batch_append_async(
            account_id=principal.account_id, collector_id=collector_id, payload=payload, size_bytes=size_bytes)
        status, content, extra = 200, b'{"ingestionId":"%s"}' % str(result.ingestion_id).encode("ascii"), []
    except ApiError as exc:
        status, content, extra = _error(error_response(exc.status, exc.code, exc.message, exc.details, exc.headers))
    except psycopg.OperationalError as exc:
        status, content, extra = _error(exception_to_response(OperationalError(str(exc))))
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode("ascii")),
        (b"x-content-type-options", b"nosniff"), *extra,
    ]})
    await send({"type": "http.response.body", "body": content})
    REQUESTS.labels("POST", ROUTE, str(status)).inc()
    LATENCY.labels(ROUTE).observe(time.perf_counter() - started)


def _error(response) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    extra = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
             if name.lower() not in ("content-type", "content-length")]
    return response.status_code, response.content, extra


async def _read_body(receive, length: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > length:
            return b"".join(chunks), False
        if not message.get("more_body"):
            return b"".join(chunks), size == length


def _replaying(body: bytes, receive):
    """A ``receive`` that hands over the body already read, then the client's own messages."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
