"""ASGI entry point: ``gunicorn config.asgi:application -k uvicorn.workers.UvicornWorker``.

The hot endpoints' common requests are served on the event loop (``config/fastpath.py``): send
data (``collection/api/ingest_asgi.py``), ``/ingest`` and report usage
(``metering/compat/ingest_asgi.py``). Everything else goes to Django's ASGI application. See
README "How it scales".
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

# These need Django set up.
from collection.api.ingest_asgi import SEND_DATA  # noqa: E402
from config.fastpath import application_with_fast_routes  # noqa: E402
from metering.compat.ingest_asgi import INGEST, REPORT  # noqa: E402

application = application_with_fast_routes(django_application, [SEND_DATA, INGEST, REPORT])
