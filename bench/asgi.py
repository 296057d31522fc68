"""The benchmarks' ASGI application: ``config.asgi``'s, with the ceiling views on the hot path."""

from config.asgi import django_application

from config.hot_routes import HOT_PATHS  # isort: skip - after Django is set up (config.asgi)

application = HOT_PATHS.asgi(django_application, urlconf="bench.hot_urls")
