"""Failed credential checks, counted so that guessing is slow and nobody else is locked out.

A counter per key in the cache (Redis when ``REDIS_URL`` is set, so every web process shares it;
in-process otherwise), in a fixed window that starts at the key's first failure. Once a key has
``limit`` failures, it is blocked until its window ends.

- Admin sign-in (``admin_login``): failures per (user name, client address), and per client
  address whatever the user name (spraying). Never per user name alone, so nobody can lock an
  administrator out from another address. A success clears its (user name, address) counter, not
  the address's.
- ``POST /oauth/token`` (``token_failures``): failures per client address. Never per client id,
  so wrong secrets sent by others never block the client that holds the right one.

If the cache is unreachable, checks are not blocked (logged): sign-in keeps working.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


def client_address(request) -> str:
    """The peer address as the web server saw it (behind a proxy, have it set REMOTE_ADDR)."""
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


@dataclass(frozen=True)
class FailureCounter:
    name: str
    limit_setting: str
    window_setting: str

    @property
    def limit(self) -> int:
        return int(getattr(settings, self.limit_setting))

    @property
    def window(self) -> int:
        return int(getattr(settings, self.window_setting))

    def _key(self, *parts: str) -> str:
        digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
        return f"throttle:{self.name}:{digest}"

    def blocked_for(self, *parts: str) -> int:
        """Seconds until ``parts`` may try again (0: not blocked)."""
        key = self._key(*parts)
        try:
            values = cache.get_many([key, f"{key}:until"])
        except redis.RedisError:
            logger.warning("throttle %s: cache unavailable, not limiting", self.name)
            return 0
        if int(values.get(key) or 0) < self.limit:
            return 0
        return max(1, math.ceil(float(values.get(f"{key}:until") or 0) - time.time()))

    def failed(self, *parts: str) -> None:
        key, window = self._key(*parts), self.window
        try:
            if cache.add(key, 0, timeout=window):
                cache.set(f"{key}:until", time.time() + window, timeout=window)
            cache.incr(key)
        except ValueError:
            pass  # expired between add and incr: the next failure starts a new window
        except redis.RedisError:
            logger.warning("throttle %s: cache unavailable, failure not counted", self.name)

    def clear(self, *parts: str) -> None:
        key = self._key(*parts)
        try:
            cache.delete_many([key, f"{key}:until"])
        except redis.RedisError:
            logger.warning("throttle %s: cache unavailable, counter not cleared", self.name)


login_per_user = FailureCounter("login-user", "LOGIN_FAILURE_LIMIT", "LOGIN_LOCKOUT_SECONDS")
login_per_address = FailureCounter("login-address", "LOGIN_ADDRESS_FAILURE_LIMIT", "LOGIN_LOCKOUT_SECONDS")
token_failures = FailureCounter("token-address", "TOKEN_FAILURE_LIMIT", "TOKEN_FAILURE_WINDOW_SECONDS")


def login_blocked_for(username: str, address: str) -> int:
    return max(
        login_per_user.blocked_for(username.casefold(), address), login_per_address.blocked_for(address)
    )


def login_failed(username: str, address: str) -> None:
    login_per_user.failed(username.casefold(), address)
    login_per_address.failed(address)


def login_succeeded(username: str, address: str) -> None:
    login_per_user.clear(username.casefold(), address)
