from config.api.errors import ApiError


class InvalidClient(ApiError):
    status = 401
    code = "INVALID_CLIENT"
    message = "Client authentication failed: unknown client or wrong secret."


class InvalidTokenRequest(ApiError):
    status = 400
    code = "INVALID_REQUEST"
    message = "The token request is missing a required field."


class UnsupportedGrantType(ApiError):
    status = 400
    code = "UNSUPPORTED_GRANT_TYPE"
    message = "grant_type must be client_credentials."


class InvalidScope(ApiError):
    status = 400
    code = "INVALID_SCOPE"
    message = "The requested scope is not held by this Application Access."
