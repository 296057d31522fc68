"""The accounts app's authentication as OpenAPI says it: the security schemes, each operation's
security requirements and seed 001's identity headers.

- ``OAuth2``: the client-credentials flow of ``POST /oauth/token`` (its ``tokenUrl`` is that route,
  reversed), so the Authorize button of ``/docs/`` fetches a token. Every scope the service grants
  is listed, seed 000's names and seed 001's unprefixed ones.
- ``ApiKey``: the ``X-API-KEY`` header of the Amberflo- and billing-compatible endpoints.

An operation's requirements are derived from its view: one ``{"OAuth2": [scope]}`` per scope the
view accepts (``config.api.permissions.required_scopes_for``, then ``accepted_scopes``: any one of
them is enough, hence one requirement each), and ``{"ApiKey": []}`` where a key is taken too. The
schemes themselves are added once by ``security_schemes`` (a postprocessing hook): the extensions
register no component, so two authentication classes cannot declare one name twice.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter

from accounts.scopes import ALL_SCOPES
from config.api.errors import ApiError
from config.api.permissions import accepted_scopes, required_scopes_for
from config.api.principal import normalize_scope

# ``config.api.schema.FORBIDDEN_WHEN_MISMATCHED`` (not imported: that module loads before this one):
# a value these headers do not accept is a 403, so they imply no 400.
FORBIDDEN_WHEN_MISMATCHED = "x-forbidden-when-mismatched"
OAUTH2 = "OAuth2"
API_KEY = "ApiKey"

# Seed 001 declares both on every operation ("header Parameters: X-Account-Id string,
# X-Application-Id string"); ``accounts.authentication`` checks them wherever it authenticates.
IDENTITY_HEADERS = [
    OpenApiParameter(
        "X-Account-Id",
        str,
        OpenApiParameter.HEADER,
        required=False,
        extensions={FORBIDDEN_WHEN_MISMATCHED: True},
        description=(
            "Seed 001: the account the call is for. Optional; when sent it must be the credential's "
            "account, compared as a UUID (any case), else 403 ACCOUNT_MISMATCH."
        ),
    ),
    OpenApiParameter(
        "X-Application-Id",
        str,
        OpenApiParameter.HEADER,
        required=False,
        extensions={FORBIDDEN_WHEN_MISMATCHED: True},
        description=(
            "Seed 001: the Application Access making the call, by its id or its client id. Optional; "
            "when sent it must name the token's application, else 403 APPLICATION_MISMATCH (always "
            "with an X-API-KEY alone, which belongs to no application)."
        ),
    ),
]


def operation_scopes(view: Any) -> list[str]:
    """The scopes a token may hold to call this operation (any one of them)."""
    try:
        required = required_scopes_for(view, view.request)
    except ApiError:
        return []  # declares none: every call is refused, no scope to name
    return accepted_scopes(required)


def _requirements(auto_schema: Any, *, api_key: bool) -> list[dict[str, list[str]]]:
    scopes = operation_scopes(auto_schema.view)
    requirements = [{OAUTH2: [scope]} for scope in scopes] or [{OAUTH2: []}]
    if api_key:
        requirements.append({API_KEY: []})
    return requirements


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerTokenAuthentication"
    name: list[str] = []  # the schemes are added by ``security_schemes``

    def get_security_requirement(self, auto_schema: Any) -> Any:
        return _requirements(auto_schema, api_key=False)

    def get_security_definition(self, auto_schema: Any) -> Any:
        return []


class BearerOrApiKeyScheme(BearerTokenScheme):
    target_class = "accounts.authentication.BearerOrApiKeyAuthentication"

    def get_security_requirement(self, auto_schema: Any) -> Any:
        # Either a token with one of the scopes, or a key (whose scopes are checked alike).
        return _requirements(auto_schema, api_key=True)


def _scope_description(scope: str) -> str:
    short = normalize_scope(scope)
    if short != scope:
        return f"{short.replace(':', ' ').replace('_', ' ')} ({scope.split(':')[0]})"
    prefixed = next(
        (known for known in ALL_SCOPES if known != scope and normalize_scope(known) == scope), None
    )
    if prefixed is not None:
        return f"Seed 001's name for {prefixed}."
    return scope.replace("-", " ")


def granted_scopes() -> list[str]:
    """Every scope an Application Access may hold: seed 000's names, then seed 001's unprefixed ones."""
    return list(dict.fromkeys([*ALL_SCOPES, *(normalize_scope(scope) for scope in ALL_SCOPES)]))


def security_schemes(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the two security schemes, each declared once."""
    result.setdefault("components", {})["securitySchemes"] = {
        OAUTH2: {
            "type": "oauth2",
            "description": (
                "OAuth 2.0 client credentials of an Application Access: POST /oauth/token answers a "
                "bearer token (1 hour) holding the requested scopes the access has, or all of them. "
                "Send it as `Authorization: Bearer <token>`."
            ),
            "flows": {
                "clientCredentials": {
                    "tokenUrl": reverse("oauth-token"),
                    "scopes": {scope: _scope_description(scope) for scope in granted_scopes()},
                }
            },
        },
        API_KEY: {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-KEY",
            "description": (
                "An API key (Amberflo- and billing-compatible endpoints). Sent together with a bearer "
                "token, it must be valid too (an unknown key is 401 INVALID_API_KEY) and of the same "
                "account (401 CREDENTIALS_MISMATCH); the token's scopes then apply."
            ),
        },
    }
    return result
