"""Token-bucket rate limits per client and endpoint group (seed 000's rates and bursts).

Redis-backed (one atomic Lua script, Redis's own clock) when ``REDIS_URL`` is set, so every web
process shares a bucket. If Redis is unreachable the limiter falls back to an in-process bucket
per web process for ``FALLBACK_SECONDS`` before trying Redis again: requests keep being served
and limited (per process) rather than failing. Without ``REDIS_URL`` the in-process bucket is
the only one (embedded default).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from config.api.errors import RateLimited
from config.hot.grouping import PerLoop

logger = logging.getLogger(__name__)

FALLBACK_SECONDS = 5.0

# Takes a token from each of KEYS (ARGV holds each key's rate per ms and burst, in pairs; a key
# may repeat) and returns allowed and remaining per key, flat: one key is the synchronous path's
# call, several are the ASGI fast path's group (``config.grouping``).
_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local data = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(data[1])
  local ts = tonumber(data[2])
  if tokens == nil then tokens = burst; ts = now end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local allowed = 0
  if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
  redis.call('HSET', key, 't', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(burst / rate) + 1000)
  out[2 * i - 1] = allowed
  out[2 * i] = tostring(tokens)
end
return out
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: float
    limit: int
    retry_after: float

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, math.floor(self.remaining))),
            "RateLimit-Reset": str(max(0, math.ceil(self.retry_after))),
        }


class _LocalBuckets:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate_per_ms: float, burst: int) -> tuple[bool, float]:
        now = time.monotonic() * 1000
        with self._lock:
            tokens, ts = self._buckets.get(key, (float(burst), now))
            tokens = min(burst, tokens + max(0.0, now - ts) * rate_per_ms)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            self._buckets[key] = (tokens, now)
            return allowed, tokens

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


class RateLimiter:
    def __init__(self) -> None:
        self.local = _LocalBuckets()
        self._redis: Any = None  # redis.Redis once connected
        self._script: Any = None  # its registered rate-limit script
        self._redis_down_until = 0.0
        self._lock = threading.Lock()
        self._async_scripts: dict = {}
        self._async_takes = PerLoop(self._take_group)

    def _client(self) -> Any:
        if not settings.REDIS_URL or time.monotonic() < self._redis_down_until:
            return None
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    import redis

                    self._redis = redis.Redis.from_url(
                        settings.REDIS_URL, socket_timeout=0.25, socket_connect_timeout=0.25
                    )
                    self._script = self._redis.register_script(_LUA)
        return self._redis

    def take(self, group: str, client: str) -> Decision:
        key, rate_per_ms, burst = self._bucket(group, client)
        allowed, remaining = None, 0.0
        redis_client = self._client()
        if redis_client is not None:
            import redis

            try:
                result = self._script(keys=[key], args=[rate_per_ms, burst])
                allowed, remaining = bool(int(result[0])), float(result[1])
            except redis.RedisError as exc:
                self._redis_failed(exc)
        return self._decision(key, rate_per_ms, burst, allowed, remaining)

    async def take_async(self, group: str, client: str) -> Decision:
        """``take`` for an event loop (the ASGI fast paths, ``config/fastpath.py``): the same script and bucket
        through ``redis.asyncio``; the calls of requests waiting at once share one script call."""
        key, rate_per_ms, burst = self._bucket(group, client)
        allowed, remaining = None, 0.0
        if self._async_script() is not None:
            import redis

            try:
                allowed, remaining = await self._async_takes.submit((key, rate_per_ms, burst))
            except redis.RedisError as exc:
                self._redis_failed(exc)
        return self._decision(key, rate_per_ms, burst, allowed, remaining)

    async def _take_group(self, buckets: list[tuple[str, float, int]]) -> list[tuple[bool, float]]:
        script = self._async_script()
        if script is None:
            import redis

            raise redis.ConnectionError("Redis is marked down")
        flat = await script(
            keys=[key for key, _, _ in buckets],
            args=[value for _, rate, burst in buckets for value in (rate, burst)],
        )
        return [(bool(int(flat[2 * n])), float(flat[2 * n + 1])) for n in range(len(buckets))]

    @staticmethod
    def _bucket(group: str, client: str) -> tuple[str, float, int]:
        rate, per_seconds, burst = settings.RATE_LIMITS[group]
        return f"rl:{group}:{client}", rate / (per_seconds * 1000.0), burst

    def _async_script(self) -> Any:
        if not settings.REDIS_URL or time.monotonic() < self._redis_down_until:
            return None
        import asyncio

        loop = asyncio.get_running_loop()
        script = self._async_scripts.get(loop)
        if script is None:
            import redis.asyncio

            for closed in [other for other in self._async_scripts if other.is_closed()]:
                del self._async_scripts[closed]
            client = redis.asyncio.Redis.from_url(
                settings.REDIS_URL, socket_timeout=0.25, socket_connect_timeout=0.25
            )
            script = self._async_scripts[loop] = client.register_script(_LUA)
        return script

    def _redis_failed(self, exc: Exception) -> None:
        logger.warning(
            "rate limiter: Redis unavailable (%s); in-process buckets for %ss",
            exc.__class__.__name__,
            FALLBACK_SECONDS,
        )
        self._redis_down_until = time.monotonic() + FALLBACK_SECONDS
        self._redis = None
        self._async_scripts.clear()

    def _decision(
        self, key: str, rate_per_ms: float, burst: int, allowed: bool | None, remaining: float
    ) -> Decision:
        if allowed is None:
            allowed, remaining = self.local.take(key, rate_per_ms, burst)
        retry_after = 0.0 if allowed else (1 - remaining) / rate_per_ms / 1000.0
        return Decision(allowed=allowed, remaining=remaining, limit=burst, retry_after=retry_after)

    def reset(self) -> None:
        self.local.clear()
        client = self._client()
        if client is not None:
            import redis

            try:
                for key in client.scan_iter("rl:*"):
                    client.delete(key)
            except redis.RedisError:
                self._redis = None


limiter = RateLimiter()


def enforce_rate_limit(group: str, client: str) -> Decision | None:
    """Raise 429 (with Retry-After and RateLimit-* headers) when the client's bucket is empty."""
    if not settings.RATE_LIMIT_ENABLED:
        return None
    return _enforce(limiter.take(group, client))


async def enforce_rate_limit_async(group: str, client: str) -> Decision | None:
    """``enforce_rate_limit`` for an event loop."""
    if not settings.RATE_LIMIT_ENABLED:
        return None
    return _enforce(await limiter.take_async(group, client))


def _enforce(decision: Decision) -> Decision:
    if not decision.allowed:
        headers = decision.headers()
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
        raise RateLimited(headers=headers)
    return decision
