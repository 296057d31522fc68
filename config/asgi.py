"""ASGI entry point: ``gunicorn config.asgi:application -k uvicorn.workers.UvicornWorker``.

Send data's common request is served on the event loop (``collection/api/ingest_asgi.py``);
everything else goes to Django's ASGI application. See README "How it scales".
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from collection.api.ingest_asgi import application_with_fast_send_data  # noqa: E402 - needs Django set up

application = application_with_fast_send_data(django_application)
