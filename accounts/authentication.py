"""Authentication: a request's credentials resolved to one ``Principal``, through the cache.

Every API request comes here, the DRF views through ``BearerTokenAuthentication`` and the hot
paths (``config.hot``) through ``AUTHENTICATOR``: ``principal_from_headers`` looks each credential
up (``accounts.selectors``) at most once per ``AUTH_CACHE_SECONDS`` per process
(``accounts.credentials.principal_cache``; a revoked credential stops working within that TTL),
records its use (``credential_mark_used``, once per lookup, not per request) and checks seed
001's identity headers. ``cached_principal`` is the same answer for a caller whose credentials
are all in the cache, and None otherwise: what an event loop can settle without the database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Hashable, Mapping

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts import selectors, services
from accounts.credentials import api_key_cache_key, principal_cache, token_cache_key
from accounts.openapi import IDENTITY_HEADERS
from config.api.errors import Forbidden, Unauthorized
from config.api.principal import Principal
from config.ttlcache import MISSING

# Header names as ``request.headers`` and the hot paths' header maps take them (case-insensitive
# there, lower-case here). Repeated headers arrive joined with "," (as WSGI servers and Django
# join them), so a second X-Account-Id or Authorization never passes unseen.
AUTHORIZATION = "authorization"
API_KEY = "x-api-key"
ACCOUNT_ID = "x-account-id"
APPLICATION_ID = "x-application-id"


def _looked_up(key: str) -> Principal | None:
    """What a cache key (``t:`` or ``k:`` and the checksum) names in the database, its use recorded."""
    if key.startswith("t:"):
        principal = selectors.principal_for_token_checksum(key[2:])
        if principal is not None:
            services.credential_mark_used(application_id=principal.application_id)
    else:
        principal = selectors.principal_for_api_key_checksum(key[2:])
        if principal is not None:
            services.credential_mark_used(api_key_id=principal.api_key_id)
    return principal


def _principal(key: str) -> Principal | None:
    principal = principal_cache.get(key, MISSING)
    if principal is MISSING:
        principal = _looked_up(key)
        principal_cache.put(key, principal)
    return principal


def _token_principal(token: str) -> Principal | None:
    return _principal(token_cache_key(token))


def _api_key_principal(api_key: str) -> Principal | None:
    return _principal(api_key_cache_key(api_key))


def _held(key: str) -> bool:
    """Whether the cache holds ``key``; a held entry near its end is refreshed in the background
    (the event loop's callers: a key in use never expires on their path)."""
    return principal_cache.get(key, MISSING, refresh=lambda: _looked_up(key)) is not MISSING


def _bearer(header: str) -> str:
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.", code="INVALID_TOKEN")
    return credential.strip()


def principal_from_headers(headers: Mapping[str, str], *, allow_api_key: bool = False) -> Principal:
    """Resolve the caller or raise 401/403.

    Where an endpoint takes an ``X-API-KEY`` as well as a bearer token, every credential sent is
    checked: an unknown key is 401 even next to a valid token (a client must not believe a key
    works because its token carried the call). Both together must belong to one account; the
    token then names the caller (its scopes apply).
    """
    header = headers.get(AUTHORIZATION, "")
    principal: Principal | None = None
    if header:
        principal = _token_principal(_bearer(header))
        if principal is None or (principal.expires_at and principal.expires_at < time.time()):
            raise Unauthorized("The access token is unknown, revoked or expired.", code="INVALID_TOKEN")
    api_key = headers.get(API_KEY) if allow_api_key else None
    if api_key is not None:
        key_principal = _api_key_principal(api_key.strip()) if api_key.strip() else None
        if key_principal is None:
            raise Unauthorized("The API key is unknown or revoked.", code="INVALID_API_KEY")
        if principal is not None and principal.account_id != key_principal.account_id:
            raise Unauthorized(
                "The access token and the API key belong to different accounts.", code="CREDENTIALS_MISMATCH"
            )
        principal = principal or key_principal
    if principal is None:
        raise Unauthorized("Authentication credentials were not provided.")
    _check_identity_headers(headers, principal)
    return principal


def cached_principal(headers: Mapping[str, str], *, allow_api_key: bool = False) -> Principal | None:
    """``principal_from_headers`` when every credential sent is in the cache (its 401/403
    included), else None: the caller needs the database."""
    header = headers.get(AUTHORIZATION)
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip() and not _held(token_cache_key(token.strip())):
            return None
    api_key = headers.get(API_KEY) if allow_api_key else None
    if api_key is not None and api_key.strip() and not _held(api_key_cache_key(api_key.strip())):
        return None
    return principal_from_headers(headers, allow_api_key=allow_api_key)


def _same_uuid(text: str, expected: uuid.UUID | None) -> bool:
    if expected is None:
        return False
    try:
        return uuid.UUID(text.strip()) == expected
    except ValueError:
        return False


def _check_identity_headers(headers: Mapping[str, str], principal: Principal) -> None:
    """Seed 001's X-Account-Id / X-Application-Id: optional, but must match the token when sent.
    Ids are compared as UUIDs (any case); the application may also be named by its client id."""
    account_header = headers.get(ACCOUNT_ID)
    if account_header and not _same_uuid(account_header, principal.account_id):
        raise Forbidden("X-Account-Id does not match the token's account.", code="ACCOUNT_MISMATCH")
    application_header = headers.get(APPLICATION_ID)
    if application_header:
        if principal.application_id is None or not (
            _same_uuid(application_header, principal.application_id)
            or application_header.strip() == principal.client_key.removeprefix("client:")
        ):
            raise Forbidden(
                "X-Application-Id does not match the token's application.", code="APPLICATION_MISMATCH"
            )


class Authenticator:
    """What the hot-path pipeline (``config.hot``) needs of authentication, without importing
    this app: the lookup, and the lookup an event loop can settle from the cache."""

    def __call__(self, headers: Mapping[str, str], *, allow_api_key: bool) -> Principal:
        return principal_from_headers(headers, allow_api_key=allow_api_key)

    def cached(self, headers: Mapping[str, str], *, allow_api_key: bool) -> Principal | None:
        return cached_principal(headers, allow_api_key=allow_api_key)

    def credentials(self, headers: Mapping[str, str], *, allow_api_key: bool) -> Hashable:
        return ("credentials", headers.get(AUTHORIZATION), headers.get(API_KEY) if allow_api_key else None)


AUTHENTICATOR = Authenticator()


# --- DRF ------------------------------------------------------------------------------------


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
    # What every operation it authenticates documents (``config.api.schema.ApiAutoSchema``): seed
    # 001's headers, checked by ``principal_from_headers``.
    openapi_parameters = IDENTITY_HEADERS

    def authenticate(self, request: Request) -> tuple[ApiClient, Principal]:
        principal = principal_from_headers(request._request.headers, allow_api_key=self.allow_api_key)
        return ApiClient(principal), principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class BearerOrApiKeyAuthentication(BearerTokenAuthentication):
    """For the Amberflo- and billing-compatible endpoints, which also take ``X-API-KEY``."""

    allow_api_key = True
