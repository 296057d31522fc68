"""Error codes of the Amberflo- and billing-compatible APIs (seed 002, seed 004)."""

from config.api.errors import ApiError, NotFound, ValidationFailed


class MeterDefinitionNotFound(NotFound):
    code = "METER_DEFINITION_NOT_FOUND"
    message = "No meter definition has this meterApiName."


class MeterIdentifierRequired(ValidationFailed):
    code = "METER_IDENTIFIER_REQUIRED"
    message = "Give meterId or meterName."


class MeterArchived(ApiError):
    status = 400
    code = "METER_ARCHIVED"
    message = "The meter is archived; usage is only accepted for ACTIVE meters."


class IdempotencyKeyRequired(ValidationFailed):
    code = "IDEMPOTENCY_KEY_REQUIRED"
    message = "The Idempotency-Key (or x-api-idempotency-key) header is required."
