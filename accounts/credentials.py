"""What credentials are stored as, and the in-process cache of their lookups.

Tokens and API keys are stored as their SHA-256 checksum only. ``principal_cache`` holds what a
checksum resolved to (a ``Principal``, or None for an unknown or revoked credential) for
``AUTH_CACHE_SECONDS``: ``accounts.authentication`` fills it, the services that revoke a
credential empty it, so a revocation takes effect at once in the process that made it and within
that TTL in every other one.
"""

from __future__ import annotations

import hashlib

from django.conf import settings

from config.api.principal import Principal
from config.ttlcache import TtlCache

principal_cache: TtlCache[Principal | None] = TtlCache(ttl=lambda: settings.AUTH_CACHE_SECONDS)


def checksum(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_cache_key(token: str) -> str:
    return "t:" + checksum(token)


def api_key_cache_key(key: str) -> str:
    return "k:" + checksum(key)
