"""The parameters app's error codes."""

from config.api.errors import ApiError, Conflict, NotFound


class ParameterNotFound(NotFound):
    code = "PARAMETER_NOT_FOUND"
    message = "Parameter not found."


class ParameterAlreadyExists(Conflict):
    code = "PARAMETER_ALREADY_EXISTS"
    message = "A parameter with this name already exists in the account."


class ParameterLimitReached(Conflict):
    code = "PARAMETER_LIMIT_REACHED"
    message = "The account already holds the maximum number of parameters (100)."


class ParameterTypeImmutable(ApiError):
    status = 400
    code = "PARAMETER_TYPE_IMMUTABLE"
    message = "The parameter type cannot be updated."


class ParameterEncryptionError(ApiError):
    """Base of the key and ciphertext errors: a server-side configuration problem, never the caller's."""

    status = 500
    code = "PARAMETER_ENCRYPTION_ERROR"


class ParameterEncryptionKeyMissing(ParameterEncryptionError):
    code = "PARAMETER_ENCRYPTION_KEY_MISSING"
    message = (
        "No encryption key is configured for sensitive parameters: set PARAMETER_ENCRYPTION_KEYS "
        "(or PARAMETER_KEY_FILE for the embedded default)."
    )


class ParameterEncryptionKeyInvalid(ParameterEncryptionError):
    code = "PARAMETER_ENCRYPTION_KEY_INVALID"
    message = (
        "A configured parameter encryption key is not a valid Fernet key (32 url-safe base64-encoded bytes)."
    )


class ParameterDecryptionFailed(ParameterEncryptionError):
    code = "PARAMETER_DECRYPTION_FAILED"
    message = (
        "A sensitive parameter cannot be decrypted with the configured keys: PARAMETER_ENCRYPTION_KEYS "
        "is missing the key it was encrypted with."
    )
