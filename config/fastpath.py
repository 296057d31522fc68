"""Hot endpoints served on the event loop under ASGI (``config/asgi.py``).

Under a WSGI worker every request blocks its process on each round trip (the Redis rate-limit
call, the database write), and on a small machine waking processes costs more than the work.
Under an ASGI worker (gunicorn with ``uvicorn.workers.UvicornWorker``) one process keeps many
requests in flight and waits for all their round trips at once, and concurrent requests share
round trips (``config.grouping``).

A ``FastRoute`` takes only requests whose every check is already settled in process memory:
credentials in the principal cache, no query string, a declared ``Content-Length`` within the
limit, and whatever the route itself needs (``settle`` before the body is read, ``prepare`` after
it; either may hand the request over). It then runs the same steps as the Django view, with the
same helpers, in the same order: caller, scope, rate limit (``redis.asyncio``), the route's work,
answer. Any other request (a cache miss, an oversized body, a form the route leaves to the view)
is handed, body and all, to Django's ASGI application, where the view answers it exactly as under
WSGI. With the embedded SQLite database every request goes to Django.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections

from config.api.errors import ApiError, error_response, exception_to_response
from config.api.permissions import require_scopes
from config.api.principal import Principal, checksum, principal_cache, principal_from_request
from config.api.ratelimit import enforce_rate_limit_async
from config.metrics import LATENCY, REQUESTS

logger = logging.getLogger(__name__)

HAND_OVER = object()  # what ``settle`` or ``prepare`` answers for a request the Django view must serve

Headers = dict[str, str]
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers


@dataclass(frozen=True)
class FastRoute:
    """One hot endpoint: ``POST`` to ``pattern``.

    ``settle(headers, match, principal)``: before the body is read; HAND_OVER, or what
    ``prepare`` needs. ``prepare(principal, headers, settled, body)``: the body decoded and
    checked (an ``ApiError`` is answered after the rate limit, as the view orders it), or
    HAND_OVER. ``answer(principal, prepared)``: the work and the answer.
    """

    pattern: re.Pattern
    route: str  # the metrics label the Django view gets
    scopes: Sequence[str]
    rate_group: str
    settle: Callable[[Headers, re.Match, Principal], Any]
    prepare: Callable[[Principal, Headers, Any, bytes], Any]
    answer: Callable[[Principal, Any], Awaitable[Answer]]
    allow_api_key: bool = False


def application_with_fast_routes(django_application, routes: Sequence[FastRoute]):
    """The ASGI callable: the routes' fast paths in front of Django's ASGI application (on
    PostgreSQL; the embedded SQLite database leaves every request to Django)."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        return django_application

    async def application(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("query_string"):
            for route in routes:
                match = route.pattern.match(scope["path"])
                if match is not None:
                    await _serve(route, match, scope, receive, send, django_application)
                    return
        await django_application(scope, receive, send)

    return application


class _Headers:
    """What ``principal_from_request`` reads of a request: ``META``, built from ASGI headers."""

    def __init__(self, headers: Headers) -> None:
        self.META = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


def cached_principal(headers: Headers, *, allow_api_key: bool) -> Principal | None:
    """The caller as ``principal_from_request`` would find it, if every credential sent is in the
    principal cache (else None: the view looks them up and fills the cache)."""
    principal = None
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        found, principal = principal_cache.get("t:" + checksum(token.strip()))
        if not found or principal is None:
            return None
    api_key = headers.get("x-api-key") if allow_api_key else None
    if api_key is not None:
        found, key_principal = principal_cache.get("k:" + checksum(api_key.strip()))
        if not found or key_principal is None:
            return None
        principal = principal or key_principal
    return principal


async def _serve(route: FastRoute, match: re.Match, scope, receive, send, django_application) -> None:
    started = time.perf_counter()
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    try:
        length = int(headers["content-length"])
    except (KeyError, ValueError):
        length = -1
    principal = cached_principal(headers, allow_api_key=route.allow_api_key)
    settled = HAND_OVER
    if 0 < length <= settings.API_MAX_BODY_BYTES and principal is not None:
        settled = route.settle(headers, match, principal)
    if settled is HAND_OVER:
        await django_application(scope, receive, send)
        return
    body, complete = await _read_body(receive, length)
    if not complete:  # more than declared, or the client left: the view says what it says
        await django_application(scope, _replaying(body, receive), send)
        return
    try:
        principal = principal_from_request(
            _Headers(headers), allow_api_key=route.allow_api_key
        )  # identity headers
        require_scopes(principal, route.scopes)
        try:
            prepared = route.prepare(principal, headers, settled, body)
        except ApiError as exc:  # answered after the rate limit, as the view orders its checks
            prepared = exc
        if prepared is HAND_OVER:
            await django_application(scope, _replaying(body, receive), send)
            return
        await enforce_rate_limit_async(route.rate_group, principal.client_key)
        if isinstance(prepared, ApiError):
            raise prepared
        status, content, extra = await route.answer(principal, prepared)
    except ApiError as exc:
        status, content, extra = _error(
            error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
        )
    except psycopg.OperationalError as exc:
        status, content, extra = _error(exception_to_response(OperationalError(str(exc))))
    except Exception as exc:
        response = exception_to_response(exc)
        if response is None:
            logger.exception("unhandled error in %s", route.route)
            response = error_response(500)
        status, content, extra = _error(response)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode("ascii")),
                (b"x-content-type-options", b"nosniff"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
    REQUESTS.labels("POST", route.route, str(status)).inc()
    LATENCY.labels(route.route).observe(time.perf_counter() - started)


def header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def _error(response) -> Answer:
    extra = header_list(
        {
            name: value
            for name, value in response.items()
            if name.lower() not in ("content-type", "content-length")
        }
    )
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
