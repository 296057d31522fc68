"""PostgreSQL connections for the asynchronous hot path (``config/asgi.py``'s send-data endpoint).

Django's ORM is synchronous; the ASGI fast path makes its one INSERT per request on psycopg's
``AsyncConnection`` instead, from a small pool per worker process (one event loop), with the
connection parameters of Django's ``default`` database. A connection that failed is dropped, not
returned. ``ASYNC_DB_POOL_SIZE`` bounds the connections a process opens.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

_PARAMETERS = (
    "dbname",
    "user",
    "password",
    "host",
    "port",
    "connect_timeout",
    "options",
    "sslmode",
    "client_encoding",
)


class AsyncPool:
    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[psycopg.AsyncConnection] = []
        self._open = 0
        self._available = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def connection(self):
        connection = await self._take()
        try:
            yield connection
        except BaseException:
            await self._drop(connection)
            raise
        await self._give_back(connection)

    async def _take(self) -> psycopg.AsyncConnection:
        async with self._available:
            while not self._idle and self._open >= self.size:
                await self._available.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            parameters = connections[DEFAULT_DB_ALIAS].get_connection_params()
            return await psycopg.AsyncConnection.connect(
                autocommit=True, **{name: value for name, value in parameters.items() if name in _PARAMETERS}
            )
        except BaseException:
            async with self._available:
                self._open -= 1
                self._available.notify()
            raise

    async def _give_back(self, connection: psycopg.AsyncConnection) -> None:
        if connection.closed or connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            await self._drop(connection)
            return
        async with self._available:
            self._idle.append(connection)
            self._available.notify()

    async def _drop(self, connection: psycopg.AsyncConnection) -> None:
        with contextlib.suppress(Exception):
            await connection.close()
        async with self._available:
            self._open -= 1
            self._available.notify()

    async def close(self) -> None:
        async with self._available:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.close()


_pools: dict[asyncio.AbstractEventLoop, AsyncPool] = {}


def pool() -> AsyncPool:
    """This event loop's pool (one per worker process; tests run several loops)."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        for other in [other for other in _pools if other.is_closed()]:
            del _pools[other]
        found = _pools[loop] = AsyncPool(settings.ASYNC_DB_POOL_SIZE)
    return found
