"""The one in-process cache of the serving layer: entries expire, the least recently used go first.

Hot paths look up what changes rarely (a credential's principal, a collector's account, a meter
type) once per ``ttl`` seconds per process instead of once per request. A change made in another
process is seen within that time; the process that makes it forgets the entry at once. The TTL is
read when an entry is stored, so a changed setting applies to the next entry. ``cachetools``
keeps the entries (bounded: past ``maxsize`` the least recently used is dropped, never the whole
cache); a lock makes it safe for threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import cachetools

Value = TypeVar("Value")

MISSING: Any = object()  # what ``get`` answers for a key that is not held (None may be a held value)


class TtlCache(Generic[Value]):
    def __init__(self, *, ttl: Callable[[], float], maxsize: int = 10_000) -> None:
        self._ttl = ttl
        self._entries: cachetools.TLRUCache = cachetools.TLRUCache(
            maxsize, self._expires_at, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def _expires_at(self, key: Hashable, value: Any, now: float) -> float:
        return now + self._ttl()

    def get(self, key: Hashable, default: Any = None) -> Value | Any:
        with self._lock:
            return self._entries.get(key, default)

    def put(self, key: Hashable, value: Value) -> None:
        with self._lock:
            self._entries[key] = value

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
