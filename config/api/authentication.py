"""DRF authentication classes built on ``config.api.principal``."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication

from config.api.principal import Principal, principal_from_request


class ApiClient:
    """The ``request.user`` of an API call: a client acting for one account, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, principal: Principal):
        self.principal = principal
        self.account_id = principal.account_id

    def __str__(self) -> str:
        return self.principal.client_key


class BearerTokenAuthentication(BaseAuthentication):
    allow_api_key = False

    def authenticate(self, request):
        principal = principal_from_request(request._request, allow_api_key=self.allow_api_key)
        return ApiClient(principal), principal

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class BearerOrApiKeyAuthentication(BearerTokenAuthentication):
    """For the Amberflo- and billing-compatible endpoints, which also take ``X-API-KEY``."""

    allow_api_key = True


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "config.api.authentication.BearerTokenAuthentication"
    name = "BearerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Token from POST /oauth/token."}


class BearerOrApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "config.api.authentication.BearerOrApiKeyAuthentication"
    name = ["BearerToken", "ApiKey"]

    def get_security_requirement(self, auto_schema):
        # Either one (two requirements), not both together (one requirement naming both).
        return [{"BearerToken": []}, {"ApiKey": []}]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer", "description": "Token from POST /oauth/token."},
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-KEY",
                "description": (
                    "An API key. Sent together with a bearer token, it must be valid too (an unknown "
                    "key is 401 INVALID_API_KEY) and of the same account (401 CREDENTIALS_MISMATCH); "
                    "the token's scopes then apply."
                ),
            },
        ]
