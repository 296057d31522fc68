"""ASGI entry point: ``gunicorn config.asgi:application -k uvicorn.workers.UvicornWorker``.

The hot routes' common requests are served on the event loop (``config.hot.loop``): send data
(``collection/api/ingest_asgi.py``), ``/ingest`` and report usage
(``metering/compat/ingest_asgi.py``); the rest of the hot paths' requests by the lean Django
handler, everything else by Django's ASGI application. See README "How it scales".
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from config.hot_routes import HOT_PATHS  # noqa: E402 - needs Django set up

application = HOT_PATHS.asgi(django_application)

# What the worker loaded (Django, the apps, the URL table) lives as long as the worker: out of the
# collector's reach, a full collection no longer walks it. Walking it took 94-117 ms, a pause of
# every request in flight on this event loop (bench/ingest.py: report usage p99 in the 60-100 ms).
gc.freeze()
