"""The one in-process cache of the serving layer: entries expire, the least recently used go first.

Hot paths look up what changes rarely (a credential's principal, a collector's account, a meter
type) once per ``ttl`` seconds per process instead of once per request. A change made in another
process is seen within that time; the process that makes it forgets the entry at once. The TTL is
read when an entry is stored, so a changed setting applies to the next entry. ``cachetools``
keeps the entries (bounded: past ``maxsize`` the least recently used is dropped, never the whole
cache); a lock makes it safe for threads.

Refresh ahead: a reader that can say how to look a key up again (``get(key, refresh=...)``) has
an entry read in the second half of its life looked up again in the background, once, by one
thread per process. A key read at least once per half TTL then never expires on a request's
path: on the event loop an expired entry hands the request to the synchronous tier, and with it
every request that holds the key at that moment (bench/ingest.py: a burst of 16 hand-overs of
35-215 ms every 5 seconds, the tail of report usage). A refreshed entry is never older than an
expired one would be, so the TTL's promise holds; ``forget`` and ``clear`` win over a refresh
already under way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import cachetools
from django.db import close_old_connections

logger = logging.getLogger(__name__)

Value = TypeVar("Value")

MISSING: Any = object()  # what ``get`` answers for a key that is not held (None may be a held value)

REFRESH_AFTER = 0.5  # share of an entry's life after which a read refreshes it in the background

_refresher: ThreadPoolExecutor | None = None
_refresher_lock = threading.Lock()


def _submit(job: Callable[[], None]) -> None:
    global _refresher
    with _refresher_lock:
        if _refresher is None:
            _refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-refresh")
    _refresher.submit(job)


class TtlCache(Generic[Value]):
    def __init__(
        self, *, ttl: Callable[[], float], maxsize: int = 10_000, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._timer = timer
        # key → (value, when a read should refresh it); expiry is the TLRU cache's own.
        self._entries: cachetools.TLRUCache = cachetools.TLRUCache(maxsize, self._expires_at, timer=timer)
        self._lock = threading.Lock()
        self._refreshing: set[Hashable] = set()
        self._generation = 0  # moves on every forget and clear: a refresh begun before stores nothing

    def _expires_at(self, key: Hashable, value: Any, now: float) -> float:
        return now + self._ttl()

    def get(
        self, key: Hashable, default: Any = None, *, refresh: Callable[[], Value] | None = None
    ) -> Value | Any:
        """The value held for ``key``, or ``default``. ``refresh`` looks the key up again (it may
        use the database; it runs on the refresh thread): given, an entry past REFRESH_AFTER of its
        life is refreshed in the background while this and later reads still get it."""
        with self._lock:
            held = self._entries.get(key, MISSING)
            if held is MISSING:
                return default
            value, refresh_at = held
            due = refresh is not None and self._timer() >= refresh_at and key not in self._refreshing
            if due:
                self._refreshing.add(key)
                generation = self._generation
        if due:
            assert refresh is not None
            _submit(lambda: self._refresh(key, refresh, generation))
        return value

    def _refresh(self, key: Hashable, refresh: Callable[[], Value], generation: int) -> None:
        try:
            close_old_connections()  # this thread's connection, as a request's end would
            value = refresh()
        except Exception:
            # The entry expires when it would have; the next reader after that looks it up itself.
            logger.info("refreshing the cached %r failed", key, exc_info=True)
            value = MISSING
        with self._lock:
            self._refreshing.discard(key)
            if value is not MISSING and generation == self._generation:
                self._store(key, value)

    def put(self, key: Hashable, value: Value) -> None:
        with self._lock:
            self._store(key, value)

    def _store(self, key: Hashable, value: Value) -> None:
        self._entries[key] = (value, self._timer() + self._ttl() * REFRESH_AFTER)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
