"""Django's error handlers, answering the JSON error body (HTML only under /admin)."""

from django.views import defaults

from config.api.errors import error_response
from config.api.middleware import is_api_path


def bad_request(request, exception=None):
    return error_response(400) if is_api_path(request.path) else defaults.bad_request(request, exception)


def forbidden(request, exception=None):
    return (
        error_response(403) if is_api_path(request.path) else defaults.permission_denied(request, exception)
    )


def not_found(request, exception=None):
    return error_response(404) if is_api_path(request.path) else defaults.page_not_found(request, exception)


def server_error(request):
    return error_response(500) if is_api_path(request.path) else defaults.server_error(request)
