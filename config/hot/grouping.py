"""Group commit on an event loop: concurrent requests share one round trip.

Under an ASGI worker many requests of one process wait at once for the same kind of round trip
(the rate-limit script in Redis, the INSERT and commit in PostgreSQL). On a small machine each
round trip costs more in waking the other process than in its work, so an ``AsyncGroup`` sends
what arrived while its previous round trip was in flight as one: the first caller starts a
flush at once (nobody waits for a group to fill), callers arriving meanwhile join the next one.

``write`` takes the values of a group and returns one outcome per value, in order; an outcome
that is an exception is raised in its caller. If ``write`` raises, every caller of the group gets
the exception. One group per event loop (``PerLoop``). ``Debounced`` pays a synchronous
after-effect of many requests once per interval.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


class AsyncGroup:
    def __init__(self, write: Callable[[list], Awaitable[Sequence]], *, max_values: int = 32) -> None:
        self._write = write
        self._max_values = max_values
        self._pending: list[tuple[object, asyncio.Future]] = []
        self._flushing = False
        # Round trips made and values they carried (values / groups is the mean group size).
        self.groups = 0
        self.values = 0

    async def submit(self, value: object) -> Any:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append((value, done))
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending[: self._max_values], self._pending[self._max_values :]
                self.groups += 1
                self.values += len(group)
                try:
                    outcomes = await self._write([value for value, _ in group])
                    if len(outcomes) != len(group):
                        raise RuntimeError(f"{len(outcomes)} outcomes for {len(group)} values")
                except Exception as exc:
                    outcomes = [exc] * len(group)
                for (_, done), outcome in zip(group, outcomes, strict=True):
                    if done.done():  # its caller was cancelled
                        continue
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
        finally:
            self._flushing = False


class PerLoop:
    """One ``AsyncGroup`` per running event loop (one per ASGI worker; tests run several)."""

    def __init__(self, write: Callable[[list], Awaitable[Sequence]], *, max_values: int = 32) -> None:
        self._write = write
        self._max_values = max_values
        self._groups: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def submit(self, value: object) -> Awaitable[Any]:
        return self.group().submit(value)

    def group(self) -> AsyncGroup:
        """The running loop's group."""
        loop = asyncio.get_running_loop()
        group = self._groups.get(loop)
        if group is None:
            group = self._groups[loop] = AsyncGroup(self._write, max_values=self._max_values)
        return group


class Debounced:
    """Run ``callback(keys)`` in the loop's executor at most once per ``delay`` seconds, for every
    key added meanwhile: a synchronous after-effect of many requests (waking readers, which may
    enqueue Celery tasks) paid once per interval, not once per request (a thread hand-off per
    request costs as much as the request). One pending set per event loop."""

    def __init__(self, callback: Callable[[set], None], *, delay: float) -> None:
        self._callback = callback
        self._delay = delay
        self._pending: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def add(self, key: object) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending.get(loop)
        if pending is not None:
            pending.add(key)
            return
        self._pending[loop] = {key}
        loop.call_later(self._delay, self._run, loop)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        keys = self._pending.pop(loop, set())
        if keys:
            loop.run_in_executor(None, self._callback, keys)
