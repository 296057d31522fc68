"""The collection app's error codes."""

from config.api.errors import ApiError, Conflict, NotFound


class CollectorNotFound(NotFound):
    code = "COLLECTOR_NOT_FOUND"
    message = "Collector not found."


class CollectorNameExists(Conflict):
    code = "COLLECTOR_NAME_EXISTS"
    message = "A collector with this name already exists in the account."


class CollectorLimitReached(Conflict):
    code = "COLLECTOR_LIMIT_REACHED"
    message = "The account already has the maximum number of collectors."


class CollectorNotActive(Conflict):
    code = "COLLECTOR_NOT_ACTIVE"
    message = "The collector is not active yet; retry when its status is ACTIVE."


class ConsumerNotRegistered(ApiError):
    """A reader asked for batches without registering first (pruning would not wait for it)."""

    status = 409
    code = "CONSUMER_NOT_REGISTERED"
    message = "The consumer is not registered on this collector."


class OffsetConflict(ApiError):
    """An offset may only move forward; anything else means another run consumed the batches."""

    status = 409
    code = "OFFSET_CONFLICT"
    message = "The consumer's offset is already at or past this batch."
