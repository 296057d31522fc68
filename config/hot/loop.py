"""The hot paths under ASGI: the pipeline on the event loop (``gunicorn config.asgi:application -k
uvicorn.workers.UvicornWorker``).

Under a WSGI worker every request blocks its process on each round trip (the Redis rate-limit
call, the database write), and on a small machine waking processes costs more than the work.
Under an ASGI worker one process keeps many requests in flight and waits for all their round
trips at once, and concurrent requests share round trips (``config.hot.grouping``).

``loop_application`` runs ``serve`` with ``LoopSteps`` for a ``POST`` to a route that has
event-loop work, with no query string and a body within the limit. The steps settle from memory
only (credentials in the principal cache, whatever the route caches); when one cannot, it hands
the request over, body and all, to ``LeanAsgiHandler``, where the Django view runs the same
pipeline synchronously, exactly as under WSGI. With the embedded SQLite database every hot
request goes to the view.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest

from config.hot.pipeline import Answer, Authenticator, Call, HandOver, HotRoute, LoopSteps, serve
from config.metrics import LATENCY, REQUESTS

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def loop_application(
    routes: Sequence[HotRoute],
    authenticator: Authenticator,
    *,
    hot_pattern: re.Pattern[str],
    hot: AsgiApp,
    rest: AsgiApp,
) -> AsgiApp:
    """The ASGI callable: the routes' event-loop work in front of ``hot`` (the lean handler, for
    every path of ``hot_pattern``), and ``rest`` for every other path."""
    steps = LoopSteps(authenticator)
    on_loop = [
        (re.compile(route_regex(route)), route) for route in routes if route.handle_on_loop is not None
    ]
    use_loop = connections[DEFAULT_DB_ALIAS].vendor == "postgresql"

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not hot_pattern.match(scope["path"]):
            await rest(scope, receive, send)
            return
        if use_loop and scope["method"] == "POST" and not scope.get("query_string"):
            for pattern, route in on_loop:
                match = pattern.match(scope["path"])
                if match is not None:
                    await _serve(route, match.groupdict(), steps, scope, receive, send, hot)
                    return
        await hot(scope, receive, send)

    return application


def route_regex(route: HotRoute) -> str:
    slash = "/?" if route.trailing_slash else ""
    return "^/" + re.sub(r"<str:(\w+)>", r"(?P<\1>[^/]+)", route.path) + slash + "$"


def headers_of(scope: Scope) -> dict[str, str]:
    """Lower-case names; a repeated header joined with "," as Django and WSGI servers join it."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


_host_verdicts: dict[tuple[str | None, tuple | None], bool] = {}


def _host_allowed(host: str | None, server: Sequence[Any] | None) -> bool:
    """Django's own check (``HttpRequest.get_host``), remembered per Host value."""
    key = (host, tuple(server) if server else None)
    verdict = _host_verdicts.get(key)
    if verdict is None:
        request = HttpRequest()
        if host is not None:
            request.META["HTTP_HOST"] = host
        if server:
            request.META["SERVER_NAME"], request.META["SERVER_PORT"] = server[0], str(server[1])
        try:
            request.get_host()
            verdict = True
        except Exception:  # DisallowedHost, or a Host Django cannot parse: the view answers it
            verdict = False
        if len(_host_verdicts) < 64:  # a handful of names per deployment; never an attacker's list
            _host_verdicts[key] = verdict
    return verdict


async def _serve(
    route: HotRoute,
    params: dict[str, str],
    steps: LoopSteps,
    scope: Scope,
    receive: Receive,
    send: Send,
    hot: AsgiApp,
) -> None:
    started = time.perf_counter()
    headers = headers_of(scope)
    declared = headers.get("content-length")
    declared_length = int(declared) if declared is not None and declared.isdigit() else None
    if (declared is not None and declared_length is None) or (
        declared_length is not None and declared_length > settings.API_MAX_BODY_BYTES
    ):
        await hot(scope, receive, send)  # the API middleware answers it, without reading the body
        return
    if not _host_allowed(headers.get("host"), scope.get("server")):
        await hot(scope, receive, send)
        return
    body, complete = await _read_body(receive, declared_length)
    if not complete:  # the client left, or sent more than it declared: the view says what it says
        await hot(scope, _replaying(body, receive), send)
        return
    call = Call(
        method="POST",
        params=params,
        headers=headers,
        body=body,
        declared_length=declared_length,
        too_large=len(body) > settings.API_MAX_BODY_BYTES,
    )
    try:
        status, content, extra = await _serve_or_wait(route, call, steps)
    except HandOver as handing:
        with _handing_over(handing.key):
            await hot(scope, _replaying(body, receive), send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode("ascii")),
                (b"x-content-type-options", b"nosniff"),
                *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
    REQUESTS.labels("POST", route.path, str(status)).inc()
    LATENCY.labels(route.path).observe(time.perf_counter() - started)


# Per event loop: what the requests with the synchronous tier are looking up (``HandOver.key``),
# each with a future done when its request ends.
_hand_overs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary()
)


async def _serve_or_wait(route: HotRoute, call: Call, steps: LoopSteps) -> Answer:
    """``serve`` on the loop; while what it misses is being looked up by another request's
    hand-over, wait for that and try again (it is cached when that request ends). Otherwise an
    expired entry sends every request holding its key at that moment to the synchronous tier's one
    thread, where they queue (bench/ingest.py: 16 at a time, 35-215 ms each, every time report
    usage's meter expired). Raises ``HandOver`` when this request must go itself. Nothing is done
    before a hand-over (it comes before the rate limit), so trying again repeats nothing."""
    running_now = _hand_overs.get(asyncio.get_running_loop(), {})
    while True:
        try:
            return await serve(route, call, steps)
        except HandOver as handing:
            running = running_now.get(handing.key) if handing.key is not None else None
            if running is None:
                raise
            await asyncio.shield(running)


@contextmanager
def _handing_over(key: Hashable | None) -> Iterator[None]:
    """The hand-over of a request looking ``key`` up: others missing it wait for its end."""
    if key is None:
        yield
        return
    running = _hand_overs.setdefault(asyncio.get_running_loop(), {})
    done = running[key] = asyncio.get_running_loop().create_future()
    try:
        yield
    finally:
        done.set_result(None)
        if running.get(key) is done:
            del running[key]


async def _read_body(receive: Receive, length: int | None) -> tuple[bytes, bool]:
    """The body, and whether it is whole: as long as declared, or (chunked) ended by the client
    within one byte past the limit (``serve`` answers 413 past it)."""
    limit = settings.API_MAX_BODY_BYTES + 1 if length is None else length
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), length is None
        if not message.get("more_body"):
            return b"".join(chunks), True


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the body already read, then the client's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
