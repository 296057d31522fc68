"""The streams app's error codes."""

from __future__ import annotations

from config.api.errors import Conflict, NotFound, ValidationFailed


class InvalidStreamConfig(ValidationFailed):
    code = "VALIDATION_ERROR"
    message = "The stream configuration is not valid."

    def __init__(self, message: str | None = None, **kwargs):
        details = kwargs.get("details") or []
        if message is None and len(details) == 1:
            detail = details[0]
            message = f"{detail['field']}: {detail['message']}" if detail["field"] else detail["message"]
        super().__init__(message, **kwargs)


class SolutionNotFound(NotFound):
    code = "SOLUTION_NOT_FOUND"
    message = "Solution not found."


class StreamNotFound(NotFound):
    code = "STREAM_NOT_FOUND"
    message = "Stream not found."


class StreamVersionNotFound(NotFound):
    code = "STREAM_VERSION_NOT_FOUND"
    message = "The stream has no version with this tag."


class StreamNameExists(Conflict):
    code = "STREAM_NAME_EXISTS"
    message = (
        "A stream with this name exists in the solution; choose onNameConflict overwrite, create-new or skip."
    )


class NodeDeletionNotAllowed(Conflict):
    code = "NODE_DELETION_NOT_ALLOWED"
    message = (
        "The import would delete nodes of the existing stream; set allowNodeDeletion to true to allow it."
    )


class StreamTagExists(Conflict):
    code = "STREAM_TAG_EXISTS"
    message = "The stream already has a version with this tag."


class SolutionNameExists(Conflict):
    code = "SOLUTION_NAME_EXISTS"
    message = "A solution with this name exists in the account."


class SolutionInUse(Conflict):
    code = "SOLUTION_IN_USE"
    message = "The solution still holds streams; delete them first."


class AggregationStoreNotFound(NotFound):
    code = "AGGREGATION_STORE_NOT_FOUND"
    message = "Aggregation store not found."


class AggregationSessionNotFound(NotFound):
    code = "AGGREGATION_SESSION_NOT_FOUND"
    message = "No session in this store has these field values."


class AggregationStoreConflict(Conflict):
    code = "AGGREGATION_STORE_CONFLICT"
    message = (
        "Another stream of the account uses this aggregation store with other key fields or another "
        "aggregator type; streams share a store only when both match."
    )
