"""The hot endpoints' own request handler: the same Django request cycle, less of it.

Send data, ``POST /ingest`` and ``POST /billing/meters/usage`` are called thousands of times a
second by services, never by a browser. ``config.wsgi.application`` hands their paths to
``HotPathHandler``: Django's WSGI handler (request signals, so database connections are managed
as usual; the view; its exceptions) with only the middleware an API call needs (metrics and the
JSON error body) and a URLconf holding only these routes. Sessions, CSRF, authentication,
messages, static files and the browser security headers cost about a third of such a request
and do nothing for it; the nosniff header is still sent. Every other path goes through the full
stack. Tests call the views through the full stack (Django's test client), the benchmarks and
the reliability tests through this one (gunicorn).
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.utils.module_loading import import_string

HOT_URLCONF = "config.hot_urls"
HOT_MIDDLEWARE = ("config.metrics.MetricsMiddleware", "config.api.middleware.ApiErrorMiddleware")
# Exactly the routes of config/hot_urls.py (``<str:…>`` matches one path segment).
_HOT_PATHS = [r"ingest", r"billing/meters/usage", r"online-collection/collectors/[^/]+/data"]


def hot_path_pattern() -> re.Pattern[str]:
    paths = list(_HOT_PATHS)
    if settings.BENCH_MINIMAL_VIEW:
        from bench.minimal_view import HOT_PATH_PATTERN

        paths.append(HOT_PATH_PATTERN)
    return re.compile("^/(?:" + "|".join(paths) + ")$")


class HotPathHandler(WSGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        """``BaseHandler.load_middleware`` for ``HOT_MIDDLEWARE`` (synchronous, no view hooks)."""
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for middleware_path in reversed(HOT_MIDDLEWARE):
            middleware = import_string(middleware_path)(handler)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler

    def get_response(self, request):
        request.urlconf = HOT_URLCONF
        response = super().get_response(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not response.streaming and "Content-Length" not in response:
            response.headers["Content-Length"] = str(len(response.content))  # as CommonMiddleware does
        return response


def dispatching_application(full: WSGIHandler):
    """The WSGI callable: hot paths to ``HotPathHandler``, everything else to ``full``."""
    hot = HotPathHandler()
    is_hot = hot_path_pattern().match

    def application(environ, start_response):
        handler = hot if is_hot(environ.get("PATH_INFO", "")) else full
        return handler(environ, start_response)

    return application
