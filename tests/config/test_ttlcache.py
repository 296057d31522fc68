"""The serving layer's in-process cache: entries expire, and a key in use is refreshed ahead of
its expiry in the background, so it never expires on a request's path."""

from __future__ import annotations

import threading
import time

from config.ttlcache import MISSING, TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def eventually(check, seconds: float = 5.0):
    """Wait for the refresh thread's work (bounded): the value once ``check`` answers it."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def test_an_entry_expires_after_its_ttl():
    clock = Clock()
    cache: TtlCache[str] = TtlCache(ttl=lambda: 10.0, timer=clock)
    cache.put("k", "v")

    clock.now += 9.9
    assert cache.get("k", MISSING) == "v"
    clock.now += 0.2
    assert cache.get("k", MISSING) is MISSING


def test_a_read_in_the_second_half_of_its_life_refreshes_it_once_in_the_background():
    clock = Clock()
    cache: TtlCache[str] = TtlCache(ttl=lambda: 10.0, timer=clock)
    cache.put("k", "old")
    calls: list[int] = []
    release = threading.Event()

    def refresh() -> str:
        calls.append(1)
        release.wait(5)
        return "new"

    clock.now += 4.9  # in the first half: no refresh
    assert cache.get("k", refresh=refresh) == "old"
    clock.now += 0.2
    # Due: every read meanwhile still answers the held value, and one refresh runs for all.
    assert [cache.get("k", refresh=refresh) for _ in range(5)] == ["old"] * 5
    release.set()
    assert eventually(lambda: cache.get("k") == "new")
    assert len(calls) == 1

    clock.now += 9.9  # the refreshed entry lives a whole TTL from its refresh
    assert cache.get("k", MISSING) == "new"


def test_a_forget_during_a_refresh_wins():
    clock = Clock()
    cache: TtlCache[str] = TtlCache(ttl=lambda: 10.0, timer=clock)
    cache.put("k", "old")
    started, release = threading.Event(), threading.Event()

    def refresh() -> str:
        started.set()
        release.wait(5)
        return "looked up before the revocation"

    clock.now += 6
    assert cache.get("k", refresh=refresh) == "old"
    assert started.wait(5)
    cache.forget("k")  # revoked in this process while the refresh was reading
    release.set()

    assert not eventually(lambda: cache.get("k", MISSING) is not MISSING, seconds=0.5)


def test_a_failed_refresh_leaves_the_entry_to_expire_and_is_tried_again_by_a_later_read():
    clock = Clock()
    cache: TtlCache[str] = TtlCache(ttl=lambda: 10.0, timer=clock)
    cache.put("k", "old")
    attempts: list[int] = []

    def failing() -> str:
        attempts.append(1)
        raise LookupError("gone")

    clock.now += 6
    assert cache.get("k", refresh=failing) == "old"
    assert eventually(lambda: attempts)
    assert eventually(lambda: cache.get("k", refresh=lambda: "again") == "again")
    clock.now += 9.9
    assert cache.get("k", MISSING) == "again"
    clock.now += 0.2
    assert cache.get("k", MISSING) is MISSING
