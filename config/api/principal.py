"""Who is calling: resolved once per request from a bearer token or an API key.

Token and API-key lookups are cached in-process for ``AUTH_CACHE_SECONDS`` so hot paths do not
query the database on every request; a revoked credential stops working within that TTL.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.http import HttpRequest

from config.api.errors import Forbidden, Unauthorized


def normalize_scope(scope: str) -> str:
    """Seed 000's prefixed scopes and seed 001's unprefixed ones name the same right."""
    parts = scope.split(":")
    return ":".join(parts[-2:]) if len(parts) >= 2 else scope


@dataclass(frozen=True)
class Principal:
    account_id: uuid.UUID
    client_key: str
    scopes: frozenset[str]
    application_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    expires_at: float = 0.0
    normalized_scopes: frozenset[str] = field(default=frozenset(), compare=False)

    def has_any_scope(self, required: tuple[str, ...] | list[str]) -> bool:
        if not required:
            return True
        wanted = {normalize_scope(scope) for scope in required}
        return bool(wanted & self.normalized_scopes)


def make_principal(**kwargs) -> Principal:
    scopes = frozenset(kwargs.pop("scopes"))
    return Principal(scopes=scopes, normalized_scopes=frozenset(normalize_scope(s) for s in scopes), **kwargs)


class _TtlCache:
    def __init__(self) -> None:
        self._data: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Principal | None]:
        entry = self._data.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: str, value: Principal | None) -> None:
        with self._lock:
            if len(self._data) > 10_000:
                self._data.clear()
            self._data[key] = (time.monotonic() + settings.AUTH_CACHE_SECONDS, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


principal_cache = _TtlCache()


def checksum(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _lookup_token(raw_token: str) -> Principal | None:
    key = "t:" + checksum(raw_token)
    found, principal = principal_cache.get(key)
    if not found:
        from accounts.selectors import principal_for_token_checksum

        principal = principal_for_token_checksum(key[2:])
        principal_cache.put(key, principal)
    if principal is not None and principal.expires_at and principal.expires_at < time.time():
        return None
    return principal


def _lookup_api_key(raw_key: str) -> Principal | None:
    key = "k:" + checksum(raw_key)
    found, principal = principal_cache.get(key)
    if not found:
        from accounts.selectors import principal_for_api_key_checksum

        principal = principal_for_api_key_checksum(key[2:])
        principal_cache.put(key, principal)
    return principal


def principal_from_request(request: HttpRequest, *, allow_api_key: bool = False) -> Principal:
    """Resolve the caller or raise 401/403. Used by DRF authentication and by plain hot-path views.

    Where an endpoint takes an ``X-API-KEY`` as well as a bearer token, every credential sent is
    checked: an unknown key is 401 even next to a valid token (a client must not believe a key
    works because its token carried the call). Both together must belong to one account; the
    token then names the caller (its scopes apply).
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    principal: Principal | None = None
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.", code="INVALID_TOKEN")
        principal = _lookup_token(credential.strip())
        if principal is None:
            raise Unauthorized("The access token is unknown, revoked or expired.", code="INVALID_TOKEN")
    api_key = request.META.get("HTTP_X_API_KEY") if allow_api_key else None
    if api_key is not None:
        key_principal = _lookup_api_key(api_key.strip()) if api_key.strip() else None
        if key_principal is None:
            raise Unauthorized("The API key is unknown or revoked.", code="INVALID_API_KEY")
        if principal is not None and principal.account_id != key_principal.account_id:
            raise Unauthorized(
                "The access token and the API key belong to different accounts.", code="CREDENTIALS_MISMATCH"
            )
        principal = principal or key_principal
    if principal is None:
        raise Unauthorized("Authentication credentials were not provided.")
    _check_identity_headers(request, principal)
    return principal


def _check_identity_headers(request: HttpRequest, principal: Principal) -> None:
    """Seed 001's X-Account-Id / X-Application-Id: optional, but must match the token when sent."""
    account_header = request.META.get("HTTP_X_ACCOUNT_ID")
    if account_header and account_header.strip() != str(principal.account_id):
        raise Forbidden("X-Account-Id does not match the token's account.", code="ACCOUNT_MISMATCH")
    application_header = request.META.get("HTTP_X_APPLICATION_ID")
    if application_header:
        if principal.application_id is None or application_header.strip() not in (
            str(principal.application_id),
            principal.client_key.removeprefix("client:"),
        ):
            raise Forbidden(
                "X-Application-Id does not match the token's application.", code="APPLICATION_MISMATCH"
            )
