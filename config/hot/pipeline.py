"""The hot endpoints' request pipeline, written once.

::

    authenticate → scope → decode → rate-limit → handle → answer

``serve`` is that order, for a ``Call`` (the request as the pipeline sees it, whichever server
delivered it) and a ``HotRoute`` (the endpoint: its scopes, rate group and the app's ``decode`` and
``handle``). The I/O steps are the tier's own (``Steps``): ``SyncSteps`` for the Django view (WSGI,
and the test client), ``LoopSteps`` for the event loop (ASGI). ``serve`` is a coroutine either way;
``run_sync`` drives it where no event loop runs (the synchronous steps never suspend), so both tiers
run these lines and answer alike.

A body that does not decode still takes its rate-limit token (the order the views always had): a
decode error is answered after the rate limit. Every ``ApiError`` is the JSON error answer; any
other exception the API's mapping (``exception_to_response``: a database outage is 503).
``HandOver`` is not an answer: an event-loop step raises it for what it cannot settle from memory,
and the ASGI adapter gives the request to the synchronous pipeline.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import psycopg
from django.conf import settings
from django.db import OperationalError
from django.http import HttpResponse

from config.api.errors import ApiError, PayloadTooLarge, error_response, exception_to_response
from config.api.permissions import require_scopes
from config.api.principal import Principal
from config.api.ratelimit import enforce_rate_limit, enforce_rate_limit_async

logger = logging.getLogger(__name__)

# status, JSON body, headers other than Content-Type and Content-Length
Answer = tuple[int, bytes, dict[str, str]]


@dataclass(frozen=True)
class Call:
    """One request to a hot endpoint."""

    method: str
    params: Mapping[str, str]  # the path's parameters
    # Case-insensitive names (Django's ``request.headers``) or lower-case ones (the ASGI adapter);
    # a repeated header arrives joined with "," as WSGI servers and Django join it.
    headers: Mapping[str, str]
    body: bytes
    declared_length: int | None  # Content-Length; None for a chunked body
    too_large: bool = False  # the body is over API_MAX_BODY_BYTES (read no further)
    host_allowed: bool = True  # the Host header names one of ALLOWED_HOSTS


class HandOver(Exception):
    """An event-loop step needs the database: the synchronous pipeline serves this request.

    ``key`` names what is missing (a credential, an account's meter) when the request's hand-over
    fills the cache with it: requests missing the same thing meanwhile wait for it and are then
    served on the loop (``config.hot.loop``). None: nothing to wait for (the view will refuse it)."""

    def __init__(self, key: Hashable | None = None) -> None:
        super().__init__()
        self.key = key


@dataclass(frozen=True)
class HotRoute:
    """One hot endpoint: ``POST`` to ``path`` (Django's route syntax), named ``name``.

    ``decode(call)`` checks the request without I/O and returns the work, or raises ``ApiError``.
    ``handle(principal, work)`` does it synchronously (the ORM, services). On the event loop,
    ``settle_on_loop(principal, work)`` returns what ``handle_on_loop`` needs if memory settles it
    (caches only) or raises ``HandOver``; a route without them is always served synchronously.
    ``schema_view`` documents the route in OpenAPI (drf-spectacular reads ``view.cls``).
    """

    path: str
    name: str
    scopes: tuple[str, ...]
    rate_group: str
    decode: Callable[[Call], Any]
    handle: Callable[[Principal, Any], Answer]
    settle_on_loop: Callable[[Principal, Any], Any] | None = None
    handle_on_loop: Callable[[Principal, Any], Awaitable[Answer]] | None = None
    allow_api_key: bool = False
    schema_view: type | None = None
    # Served at ``path/`` too (the Amberflo SDK posts to ``/ingest/``); documented once, without.
    trailing_slash: bool = False


class Authenticator(Protocol):
    """``accounts.authentication.AUTHENTICATOR``: config imports no app, the route table hands it in."""

    def __call__(self, headers: Mapping[str, str], *, allow_api_key: bool) -> Principal: ...

    def cached(self, headers: Mapping[str, str], *, allow_api_key: bool) -> Principal | None: ...

    def credentials(self, headers: Mapping[str, str], *, allow_api_key: bool) -> Hashable:
        """What names the caller's credentials: ``cached`` answers alike for equal ones."""
        ...


class Steps(Protocol):
    async def authenticate(self, route: HotRoute, call: Call) -> Principal: ...

    async def settle(self, route: HotRoute, principal: Principal, work: Any) -> Any: ...

    async def rate_limit(self, route: HotRoute, principal: Principal) -> None: ...

    async def handle(self, route: HotRoute, principal: Principal, work: Any) -> Answer: ...


class MethodNotAllowed(ApiError):
    status = 405
    code = "METHOD_NOT_ALLOWED"
    message = "Method not allowed."


class DisallowedHost(ApiError):
    """Django's answer to a Host outside ALLOWED_HOSTS (``config.api.views.bad_request``)."""

    status = 400
    code = "VALIDATION_ERROR"
    message = "The request is not valid."


class IncompleteBody(ApiError):
    status = 400
    code = "INCOMPLETE_BODY"
    message = "The body is not as long as its Content-Length says."


class UnsupportedContentEncoding(ApiError):
    status = 415
    code = "UNSUPPORTED_CONTENT_ENCODING"
    message = "Content-Encoding must be gzip or identity."


class MalformedGzip(ApiError):
    status = 400
    code = "MALFORMED_BODY"
    message = "The body is not valid gzip."


async def serve(route: HotRoute, call: Call, steps: Steps) -> Answer:
    try:
        _check_request(call)
        principal = await steps.authenticate(route, call)
        require_scopes(principal, route.scopes)
        failure: ApiError | None = None
        try:
            work = await steps.settle(route, principal, route.decode(_decompressed(call)))
        except ApiError as exc:
            work, failure = None, exc
        await steps.rate_limit(route, principal)
        if failure is not None:
            raise failure
        return await steps.handle(route, principal, work)
    except HandOver:
        raise
    except ApiError as exc:
        return answer_of(error_response(exc.status, exc.code, exc.message, exc.details, exc.headers))
    except psycopg.OperationalError as exc:  # the event loop's own connections
        return answer_of(exception_to_response(OperationalError(str(exc))) or error_response(503))
    except Exception as exc:
        response = exception_to_response(exc)
        if response is None:
            logger.exception("unhandled error in %s", route.path)
            response = error_response(500)
        return answer_of(response)


def _check_request(call: Call) -> None:
    """What the API middleware and Django check before a view, in their order."""
    if call.too_large:
        # The rest of the body is not read; tell the client the connection will not be reused.
        raise PayloadTooLarge(headers={"Connection": "close"})
    if not call.host_allowed:
        raise DisallowedHost()
    if call.method != "POST":
        raise MethodNotAllowed(headers={"Allow": "POST"})
    if call.declared_length is not None and call.declared_length != len(call.body):
        raise IncompleteBody()


def _decompressed(call: Call) -> Call:
    """The call with its body as sent before ``Content-Encoding: gzip`` (the Amberflo SDK gzips every
    ``/ingest`` body). The decompressed body has the same limit as a plain one (413), so a small
    compressed body cannot expand without bound."""
    encoding = call.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return call
    if encoding not in ("gzip", "x-gzip"):
        raise UnsupportedContentEncoding(headers={"Accept-Encoding": "gzip, identity"})
    limit = settings.API_MAX_BODY_BYTES
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(call.body, limit + 1)
    except zlib.error:
        raise MalformedGzip()
    if len(body) > limit:
        raise PayloadTooLarge()
    if not inflater.eof:
        raise MalformedGzip()
    return replace(call, body=body)


def answer_of(response: HttpResponse) -> Answer:
    headers = {
        name: value
        for name, value in response.items()
        if name.lower() not in ("content-type", "content-length")
    }
    return response.status_code, response.content, headers


class SyncSteps:
    """The Django view's steps: the ORM and the synchronous rate limiter."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def authenticate(self, route: HotRoute, call: Call) -> Principal:
        return self.authenticator(call.headers, allow_api_key=route.allow_api_key)

    async def settle(self, route: HotRoute, principal: Principal, work: Any) -> Any:
        return work

    async def rate_limit(self, route: HotRoute, principal: Principal) -> None:
        enforce_rate_limit(route.rate_group, principal.client_key)

    async def handle(self, route: HotRoute, principal: Principal, work: Any) -> Answer:
        return route.handle(principal, work)


class LoopSteps:
    """The event loop's steps: only what memory settles, the asynchronous rate limiter, and the
    route's asynchronous work; anything else is handed over."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def authenticate(self, route: HotRoute, call: Call) -> Principal:
        principal = self.authenticator.cached(call.headers, allow_api_key=route.allow_api_key)
        if principal is None:
            raise HandOver(
                key=self.authenticator.credentials(call.headers, allow_api_key=route.allow_api_key)
            )
        return principal

    async def settle(self, route: HotRoute, principal: Principal, work: Any) -> Any:
        if route.settle_on_loop is None:
            raise HandOver()
        return route.settle_on_loop(principal, work)

    async def rate_limit(self, route: HotRoute, principal: Principal) -> None:
        await enforce_rate_limit_async(route.rate_group, principal.client_key)

    async def handle(self, route: HotRoute, principal: Principal, work: Any) -> Answer:
        assert route.handle_on_loop is not None  # settle_on_loop handed over otherwise
        return await route.handle_on_loop(principal, work)


def run_sync(coroutine: Coroutine[Any, Any, Answer]) -> Answer:
    """Run ``serve`` with ``SyncSteps`` to its end without an event loop (none of them suspends)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a synchronous hot-path step suspended")
