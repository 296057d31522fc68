"""The hot paths in Django: the view adapter, and the lean handlers that serve it.

``hot_view(route, authenticator)`` is the Django view of a ``HotRoute``: it makes the ``Call``
from the ``HttpRequest`` and runs the pipeline (``config.hot.pipeline.serve``) synchronously. The
main URLconf routes it (the test client, ``reverse()``), and so does the lean URLconf
(``config/hot_urls.py``, derived from the same route table).

``LeanWsgiHandler`` and ``LeanAsgiHandler`` are Django's handlers (request signals, so database
connections are managed as usual) with only the middleware an API call needs (metrics and the
JSON error body) and the lean URLconf. Sessions, CSRF, authentication, messages, static files and
the browser security headers cost about a third of such a request and do nothing for it; the
nosniff header is still sent. Under gunicorn ``config.wsgi`` hands the hot paths to the WSGI one;
under uvicorn ``config.asgi`` hands them what the event loop does not settle.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, get_resolver
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from config.hot.pipeline import Authenticator, Call, HotRoute, SyncSteps, run_sync, serve

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

HOT_URLCONF = "config.hot_urls"
HOT_MIDDLEWARE = ("config.metrics.MetricsMiddleware", "config.api.middleware.ApiErrorMiddleware")


def call_from_request(request: HttpRequest, params: dict[str, str]) -> Call:
    declared = request.META.get("CONTENT_LENGTH")
    declared_length = int(declared) if declared and declared.isdigit() else None
    if (
        declared_length is None
        and isinstance(request, WSGIRequest)
        and request.environ.get("wsgi.input_terminated")
    ):
        # A chunked body: the server ends the stream where the body ends (gunicorn does); Django
        # reads a request without Content-Length as empty, so read it here, up to the limit.
        body = request.environ["wsgi.input"].read(settings.API_MAX_BODY_BYTES + 1)
    else:
        body = request.body
    try:
        request.get_host()
        host_allowed = True
    except DisallowedHost:
        host_allowed = False
    return Call(
        method=request.method or "",
        params=params,
        headers=request.headers,
        body=body,
        declared_length=declared_length,
        too_large=len(body) > settings.API_MAX_BODY_BYTES,
        host_allowed=host_allowed,
    )


def hot_view(route: HotRoute, authenticator: Authenticator) -> Callable[..., HttpResponse]:
    steps = SyncSteps(authenticator)

    @csrf_exempt
    def view(request: HttpRequest, **params: str) -> HttpResponse:
        status, content, headers = run_sync(serve(route, call_from_request(request, params), steps))
        response = HttpResponse(content, status=status, content_type="application/json")
        for name, value in headers.items():
            response[name] = value
        return response

    view.__name__ = view.__qualname__ = route.name.replace("-", "_")
    view.__doc__ = route.handle.__doc__
    if route.schema_view is not None:  # drf-spectacular documents URL callbacks carrying ``cls``
        view.cls = route.schema_view  # type: ignore[attr-defined]
        # The route's scopes, as a DRF view declares them (``config.api.permissions``): the schema's
        # security requirements are derived from them alike.
        view.initkwargs = {"required_scopes": {"POST": list(route.scopes)}}  # type: ignore[attr-defined]
    return view


_GROUP_NAME = re.compile(r"\(\?P<\w+>")


def hot_path_pattern(urlconf: str = HOT_URLCONF) -> re.Pattern[str]:
    """The paths the lean URLconf serves, as one expression (``<str:…>`` is one path segment)."""
    expressions = [
        _GROUP_NAME.sub("(?:", entry.pattern.regex.pattern.removeprefix("^").removesuffix("\\Z"))
        for entry in get_resolver(urlconf).url_patterns
        if isinstance(entry, URLPattern)
    ]
    return re.compile("^/(?:" + "|".join(expressions) + ")$")


class _Lean:
    urlconf = HOT_URLCONF

    def load_middleware(self, is_async: bool = False) -> None:
        """``BaseHandler.load_middleware`` for ``HOT_MIDDLEWARE`` (no view or template hooks)."""
        self._view_middleware: list = []
        self._template_response_middleware: list = []
        self._exception_middleware: list = []
        get_response = self._get_response_async if is_async else self._get_response  # type: ignore[attr-defined]
        handler = convert_exception_to_response(get_response)
        handler_is_async = is_async
        for middleware_path in reversed(HOT_MIDDLEWARE):
            middleware = import_string(middleware_path)
            middleware_is_async = getattr(middleware, "async_capable", False) and handler_is_async
            adapted = self.adapt_method_mode(middleware_is_async, handler, handler_is_async)  # type: ignore[attr-defined]
            instance = middleware(adapted)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(
                    self.adapt_method_mode(False, instance.process_exception)  # type: ignore[attr-defined]
                )
            handler = convert_exception_to_response(instance)
            handler_is_async = middleware_is_async
        self._middleware_chain = self.adapt_method_mode(is_async, handler, handler_is_async)  # type: ignore[attr-defined]

    @staticmethod
    def _finish(response: HttpResponseBase) -> HttpResponseBase:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if isinstance(response, HttpResponse) and "Content-Length" not in response:
            response.headers["Content-Length"] = str(len(response.content))  # as CommonMiddleware does
        return response


class LeanWsgiHandler(_Lean, WSGIHandler):
    def __init__(self, urlconf: str = HOT_URLCONF) -> None:
        self.urlconf = urlconf
        super().__init__()

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        request.urlconf = self.urlconf  # type: ignore[attr-defined]  # Django reads it per request
        return self._finish(super().get_response(request))


class LeanAsgiHandler(_Lean, ASGIHandler):
    def __init__(self, urlconf: str = HOT_URLCONF) -> None:
        self.urlconf = urlconf
        super().__init__()

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        request.urlconf = self.urlconf  # type: ignore[attr-defined]  # Django reads it per request
        return self._finish(await super().get_response_async(request))


def dispatching_application(full: WsgiApp, urlconf: str = HOT_URLCONF) -> WsgiApp:
    """The WSGI callable: the lean URLconf's paths to ``LeanWsgiHandler``, the rest to ``full``."""
    hot = LeanWsgiHandler(urlconf)
    is_hot = hot_path_pattern(urlconf).match

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        handler = hot if is_hot(environ.get("PATH_INFO", "")) else full
        return handler(environ, start_response)

    return application
