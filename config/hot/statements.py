"""A hot statement run as a prepared statement through libpq, on Django's own connection.

On a request path in autocommit this skips what Django's cursor adds per call and that costs
more than a one-row INSERT itself at thousands of requests per second: quoting a 1 KB payload
into the SQL text in Python, a health-check query before the first statement of each request,
and psycopg's per-call cursor machinery. Errors are still Django's (a lost connection is an
OperationalError, answered 503, and the connection is closed at the end of the request as usual).
Inside a transaction the statement goes through a psycopg cursor, which opens the transaction.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import psycopg
from django.db.backends.base.base import BaseDatabaseWrapper

# Per psycopg connection: the names of the statements prepared on it.
_prepared: weakref.WeakKeyDictionary[psycopg.Connection, set[bytes]] = weakref.WeakKeyDictionary()


def execute_prepared(
    db: BaseDatabaseWrapper, *, name: bytes, numbered_sql: str, sql: str, params: Sequence[object]
) -> int:
    """Run the statement (``numbered_sql`` with $1…, ``sql`` the same with %s) and return the
    rows it touched."""
    db.ensure_connection()
    raw = db.connection
    with db.wrap_database_errors:
        if not db.get_autocommit():
            with psycopg.Cursor(raw) as cursor:
                cursor.execute(sql, params)
                return cursor.rowcount
        pgconn = raw.pgconn
        names = _prepared.setdefault(raw, set())
        if name not in names:
            _check(pgconn, pgconn.prepare(name, numbered_sql.encode()))
            names.add(name)
        result = pgconn.exec_prepared(
            name, [None if value is None else str(value).encode() for value in params]
        )
        _check(pgconn, result)
        return result.command_tuples or 0


def _check(pgconn: psycopg.pq.abc.PGconn, result: psycopg.pq.abc.PGresult) -> None:
    if result.status == psycopg.pq.ExecStatus.COMMAND_OK:
        return
    if pgconn.status != psycopg.pq.ConnStatus.OK:
        raise psycopg.OperationalError(
            result.get_error_message("utf-8") or "The database connection was lost."
        )
    raise psycopg.errors.error_from_result(result, encoding="utf-8")
