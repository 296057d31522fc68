"""The notifications app's error codes."""

from config.api.errors import ApiError, Conflict


class TargetNotAllowed(ApiError):
    """An outbound URL that must not be called: wrong scheme, or a host that is not public."""

    status = 400
    code = "TARGET_NOT_ALLOWED"
    message = "The URL is not an allowed outbound target."

    def __init__(self, message: str | None = None, **kwargs):
        kwargs.setdefault("details", [{"field": "url", "message": message or self.message}])
        super().__init__(message, **kwargs)


class NotificationEndpointLimitReached(Conflict):
    code = "NOTIFICATION_ENDPOINT_LIMIT_REACHED"
    message = "The account has reached its maximum number of notification endpoints."


class UnknownEventType(ApiError):
    status = 400
    code = "UNKNOWN_EVENT_TYPE"
    message = "Unknown notification event type."
