"""PostgreSQL connections for the event loop's hot-path statements (``config.hot.loop``).

Django's ORM is synchronous; the event loop runs its statements on psycopg's ``AsyncConnection``
instead, from a ``psycopg_pool.AsyncConnectionPool`` per worker process (one per event loop:
tests run several), with the connection parameters of Django's ``default`` database, in
autocommit. The pool checks a connection returned in a failed state and replaces it;
``ASYNC_DB_POOL_SIZE`` bounds the connections a process opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
# How long a statement waits for a connection (all in use, or the database unreachable) before
# it fails as the database being unavailable (503).
WAIT_SECONDS = 2.0

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
    weakref.WeakKeyDictionary()
)


def _pool() -> AsyncConnectionPool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        parameters = connections[DEFAULT_DB_ALIAS].get_connection_params()
        pool = _pools[loop] = AsyncConnectionPool(
            kwargs={
                "autocommit": True,
                **{name: value for name, value in parameters.items() if name in _PARAMETERS},
            },
            min_size=0,
            max_size=settings.ASYNC_DB_POOL_SIZE,
            timeout=WAIT_SECONDS,
            open=False,
            name="hot-path",
        )
    return pool


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[psycopg.AsyncConnection]:
    """A connection of this event loop's pool, in autocommit."""
    pool = _pool()
    if pool.closed:
        await pool.open(wait=False)
    try:
        async with pool.connection() as held:
            yield held
    except PoolTimeout as exc:
        raise psycopg.OperationalError(f"no database connection within {WAIT_SECONDS} s: {exc}") from exc


async def close() -> None:
    """Close this event loop's pool (tests; a worker just exits)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
