"""The benchmarks' lean URLconf: the production hot routes and the benchmarks' ceiling views
(bench/minimal_view.py), served by the same lean handler (``bench/wsgi.py``, ``bench/asgi.py``)."""

from bench import minimal_view
from config.hot_urls import handler400, handler403, handler404, handler500
from config.hot_urls import urlpatterns as hot_urlpatterns

urlpatterns = [*hot_urlpatterns, *minimal_view.urlpatterns]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
