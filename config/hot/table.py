"""The hot routes, declared once: everything that serves them is derived from one ``HotPaths``.

``config/hot_routes.py`` builds the table from the apps' ``HotRoute`` declarations and the
accounts app's authenticator; from it come the routes of the main URLconf
(``urlpatterns()``, for the test client and ``reverse()``), the lean URLconf
(``config/hot_urls.py``), the WSGI dispatch (``wsgi()``: the lean URLconf's paths to the lean
handler) and the ASGI application (``asgi()``: the event loop in front of the lean handler).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.urls import URLPattern, path

from config.hot.django import (
    HOT_URLCONF,
    LeanAsgiHandler,
    WsgiApp,
    dispatching_application,
    hot_path_pattern,
    hot_view,
)
from config.hot.loop import AsgiApp, loop_application
from config.hot.pipeline import Authenticator, HotRoute


class HotPaths:
    def __init__(self, routes: Sequence[HotRoute], *, authenticator: Authenticator) -> None:
        self.routes = list(routes)
        self.authenticator = authenticator
        # One view per route, the same object in every URLconf.
        self.views: dict[str, Callable] = {
            route.name: hot_view(route, authenticator) for route in self.routes
        }

    def urlpatterns(self) -> list[URLPattern]:
        patterns = []
        for route in self.routes:
            patterns.append(path(route.path, self.views[route.name], name=route.name))
            if route.trailing_slash:
                patterns.append(path(f"{route.path}/", self.views[route.name], name=f"{route.name}-slash"))
        return patterns

    def wsgi(self, full: WsgiApp, *, urlconf: str = HOT_URLCONF) -> WsgiApp:
        """The WSGI application: the lean URLconf's paths to the lean handler, the rest to ``full``."""
        return dispatching_application(full, urlconf)

    def asgi(self, rest: AsgiApp, *, hot: AsgiApp | None = None, urlconf: str = HOT_URLCONF) -> AsgiApp:
        """The ASGI application: the lean URLconf's paths on the event loop, or to ``hot`` (by
        default the lean handler); every other path to ``rest``."""
        return loop_application(
            self.routes,
            self.authenticator,
            hot_pattern=hot_path_pattern(urlconf),
            hot=hot if hot is not None else LeanAsgiHandler(urlconf),
            rest=rest,
        )
