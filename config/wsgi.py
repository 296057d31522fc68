import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
full_application = get_wsgi_application()

from config.hot_routes import HOT_PATHS  # noqa: E402 - after Django is set up

application = HOT_PATHS.wsgi(full_application)
