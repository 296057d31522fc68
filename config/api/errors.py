"""One error vocabulary for every API surface.

Every error answers ``{"code", "message", "details": [{"field", "message"}]}``. Apps raise
``ApiError`` subclasses with a stable ``code``; DRF, Django and database errors are mapped here.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions

logger = logging.getLogger(__name__)

DEFAULT_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}
DEFAULT_MESSAGES = {
    400: "The request is not valid.",
    401: "Authentication is required.",
    403: "You are not allowed to do this.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "Conflict.",
    413: "Request body too large.",
    429: "Too many requests.",
    500: "An unexpected internal error occurred.",
    503: "Service unavailable, try again later.",
}


class ApiError(Exception):
    """Base of every error an app raises on purpose. Subclasses set ``status`` and ``code``."""

    status = 400
    code = "VALIDATION_ERROR"
    message = "The request is not valid."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details or []
        self.headers = headers or {}
        super().__init__(self.message)


class ValidationFailed(ApiError):
    status = 400
    code = "VALIDATION_ERROR"

    @classmethod
    def for_field(cls, field: str, message: str, code: str | None = None) -> ValidationFailed:
        return cls(message, code=code, details=[{"field": field, "message": message}])


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"
    message = "Not found."


class Conflict(ApiError):
    status = 409
    code = "CONFLICT"
    message = "Conflict."


class IdempotencyKeyReused(Conflict):
    """The same idempotency key (per account) came back with a different request body."""

    code = "IDEMPOTENCY_KEY_REUSED"
    message = "This idempotency key was already used with a different request body."


class IdempotencyKeyInUse(Conflict):
    code = "IDEMPOTENCY_KEY_IN_USE"
    message = "A request with this idempotency key is still being processed; retry shortly."


class Forbidden(ApiError):
    status = 403
    code = "FORBIDDEN"
    message = "You are not allowed to do this."


class InsufficientScope(ApiError):
    status = 403
    code = "INSUFFICIENT_SCOPE"
    message = "The token does not hold a scope this endpoint requires."


class Unauthorized(ApiError):
    status = 401
    code = "UNAUTHORIZED"
    message = "Authentication is required."

    def __init__(self, message: str | None = None, **kwargs: Any):
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="api"'})
        super().__init__(message, **kwargs)


class RateLimited(ApiError):
    status = 429
    code = "TOO_MANY_REQUESTS"
    message = "Rate limit exceeded; retry after the time in Retry-After."


class PayloadTooLarge(ApiError):
    status = 413
    code = "REQUEST_TOO_LARGE"

    def __init__(self, message: str | None = None, **kwargs: Any):
        message = message or f"The request body exceeds {settings.API_MAX_BODY_BYTES} bytes."
        super().__init__(message, **kwargs)


def error_body(
    status: int,
    code: str | None = None,
    message: str | None = None,
    details: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "code": code or DEFAULT_CODES.get(status, "ERROR"),
        "message": message or DEFAULT_MESSAGES.get(status, "Error."),
        "details": details or [],
    }


def error_response(
    status: int,
    code: str | None = None,
    message: str | None = None,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    response = JsonResponse(error_body(status, code, message, details), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten_drf_detail(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """Turn DRF's nested error dict/list into ``[{"field": "a.b", "message": "…"}]``."""
    out: list[dict[str, str]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            field = f"{prefix}.{name}" if prefix and name else (name or prefix)
            out.extend(_flatten_drf_detail(value, field))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out.extend({"field": prefix, "message": str(item)} for item in detail)
        else:
            for index, item in enumerate(detail):
                out.extend(_flatten_drf_detail(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    else:
        out.append({"field": prefix, "message": str(detail)})
    return out


# SQLSTATEs of a database that is down or cannot take the request now: connection exceptions
# (class 08), the server shutting down or starting (57P01-57P03), too many connections (53300).
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
# SQLite: the file cannot be opened, or another writer holds it past the timeout.
_SQLITE_UNAVAILABLE = ("unable to open database", "database is locked", "disk i/o error")


def database_unavailable(exc: BaseException) -> bool:
    """Whether a database error means the database cannot be reached or cannot answer now (503
    with Retry-After: trying again later can succeed), rather than a fault in the statement (500:
    retrying would fail the same way). A lost connection (InterfaceError, or an OperationalError
    without a server's SQLSTATE) is unavailable; so is one the driver names as such."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    state = getattr(cause, "sqlstate", None)
    if state is not None:
        return str(state).startswith(_UNAVAILABLE_STATES)
    if cause is not None and type(cause).__module__ == "sqlite3":
        return any(text in str(cause).lower() for text in _SQLITE_UNAVAILABLE)
    # No server answer (the connection failed or dropped), or raised as such by our own code.
    return True


def exception_to_response(exc: BaseException) -> JsonResponse | None:
    """Map any exception to the JSON error response, or ``None`` if it is not ours to map."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    if isinstance(exc, drf_exceptions.ValidationError):
        details = _flatten_drf_detail(exc.detail)
        message = details[0]["message"] if len(details) == 1 else "The request is not valid."
        if details and details[0]["field"] and len(details) == 1:
            message = f"{details[0]['field']}: {details[0]['message']}"
        return error_response(400, "VALIDATION_ERROR", message, details)
    if isinstance(exc, drf_exceptions.ParseError):
        return error_response(400, "MALFORMED_JSON", str(exc.detail))
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return error_response(
            401, "UNAUTHORIZED", str(exc.detail), headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    if isinstance(exc, drf_exceptions.Throttled):
        wait = max(1, int(getattr(exc, "wait", None) or 1))
        return error_response(
            429, "TOO_MANY_REQUESTS", "Rate limit exceeded.", headers={"Retry-After": str(wait)}
        )
    if isinstance(exc, drf_exceptions.APIException):
        status = exc.status_code
        return error_response(status, DEFAULT_CODES.get(status), str(exc.detail))
    if isinstance(exc, Http404):
        return error_response(404)
    if isinstance(exc, PermissionDenied):
        return error_response(403)
    if isinstance(exc, DjangoValidationError):
        details = [
            {"field": field, "message": str(message)}
            for field, messages in getattr(exc, "message_dict", {"": exc.messages}).items()
            for message in messages
        ]
        return error_response(400, "VALIDATION_ERROR", details[0]["message"] if details else None, details)
    if isinstance(exc, IntegrityError):
        # A race the database refused (unique constraint): the request conflicts with existing state.
        return error_response(409, "CONFLICT", "The request conflicts with existing data.")
    if isinstance(exc, DatabaseError) and database_unavailable(exc):
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        return error_response(503, headers={"Retry-After": str(settings.RETRY_AFTER_SECONDS)})
    if isinstance(exc, DatabaseError):
        logger.error("database error", exc_info=exc)
        return error_response(500)
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]):
    """DRF's EXCEPTION_HANDLER: every exception becomes the JSON error body."""
    response = exception_to_response(exc)
    if response is None:
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        response = error_response(500)
    return response
