"""Guarantees the JSON error body on every API status, including the ones Django answers itself."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from config.api.errors import PayloadTooLarge, error_response, exception_to_response
from config.api.parsers import NULL_CHARACTER_MESSAGE

logger = logging.getLogger(__name__)

# Paths that answer HTML on purpose (the operator UI and the docs page).
HTML_PREFIXES = ("/admin", "/docs", "/static")


def is_api_path(path: str) -> bool:
    return not path.startswith(HTML_PREFIXES)


class ApiErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        api = is_api_path(request.path)
        if api:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.API_MAX_BODY_BYTES:
                exc = PayloadTooLarge()
                response = error_response(exc.status, exc.code, exc.message)
                # The body is not read; tell the client the connection will not be reused.
                response["Connection"] = "close"
                return response
            null_characters = _null_character_fields(request)
            if null_characters:
                # PostgreSQL cannot compare or store "\x00": refuse it here rather than as a 500 in a query.
                return error_response(
                    400,
                    "VALIDATION_ERROR",
                    NULL_CHARACTER_MESSAGE,
                    [{"field": name, "message": NULL_CHARACTER_MESSAGE} for name in null_characters],
                )
        response = self.get_response(request)
        if api and response.status_code >= 400 and not _is_json(response):
            response = error_response(response.status_code, headers=_kept_headers(response))
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            exc = PayloadTooLarge()
            return error_response(exc.status, exc.code, exc.message)
        if not is_api_path(request.path):
            return None
        response = exception_to_response(exception)
        if response is None:
            logger.exception("unhandled error on %s", request.path, exc_info=exception)
            response = error_response(500)
        return response


def _null_character_fields(request: HttpRequest) -> list[str]:
    """The path (``"path"``) and query parameters whose decoded text holds a null character."""
    fields = ["path"] if "\x00" in request.path else []
    if "%00" in request.META.get("QUERY_STRING", ""):
        fields += [
            name or "query"
            for name, values in request.GET.lists()
            if "\x00" in name or any("\x00" in value for value in values)
        ]
    return fields


def _is_json(response: HttpResponse) -> bool:
    if not response.get("Content-Type", "").startswith("application/json"):
        return False
    if getattr(response, "streaming", False):
        return True
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return False
    return isinstance(body, dict) and "code" in body and "message" in body


def _kept_headers(response: HttpResponse) -> dict[str, str]:
    return {
        name: response[name]
        for name in ("Allow", "Retry-After", "WWW-Authenticate")
        if response.has_header(name)
    }
