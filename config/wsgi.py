import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
_full = get_wsgi_application()

from config.hotpath import dispatching_application  # noqa: E402 - after Django is set up

application = dispatching_application(_full)
