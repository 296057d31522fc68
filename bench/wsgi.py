"""The benchmarks' WSGI application: ``config.wsgi``'s, with the ceiling views on the hot path."""

from config.wsgi import full_application

from config.hot_routes import HOT_PATHS  # isort: skip - after Django is set up (config.wsgi)

application = HOT_PATHS.wsgi(full_application, urlconf="bench.hot_urls")
