"""The hot routes' table: send data, ``POST /ingest`` and report usage, declared once.

The apps declare their routes (``HotRoute``: path, name, scopes, rate group, decode and handle);
this module, like ``config/urls.py``, wires the apps together: the table and the accounts app's
authenticator. ``config/urls.py``, ``config/hot_urls.py``, ``config/wsgi.py`` and
``config/asgi.py`` derive everything that serves these routes from ``HOT_PATHS``
(``config.hot.table``). A new hot endpoint is one more ``HotRoute`` here.
"""

from accounts.authentication import AUTHENTICATOR
from collection.api.ingest import SEND_DATA
from config.hot.table import HotPaths
from metering.compat.views import INGEST, REPORT

HOT_PATHS = HotPaths([SEND_DATA, INGEST, REPORT], authenticator=AUTHENTICATOR)
