"""Statements run on the Django connection's own psycopg cursor with server-side binding: the
parameters travel apart from the SQL, so psycopg never quotes them in Python (client-side binding,
Django's default, escapes every character of a large text or array parameter), through Django's
execute wrappers (query capture, instrumentation) and its error mapping. PostgreSQL only."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import connection
from psycopg import Cursor


def bound_cursor() -> Cursor[Any]:
    connection.ensure_connection()
    return Cursor(connection.connection)


def bound_execute(
    cursor: Cursor[Any], statement: str, params: Any, prepare: bool | None = None
) -> Cursor[Any]:
    """``statement`` with ``params`` on ``cursor`` (``bound_cursor``); ``prepare``: psycopg's
    (True: prepared once per connection)."""
    connection.validate_no_broken_transaction()

    def run(sql: str, params: Any, many: bool, context: dict[str, Any]) -> Cursor[Any]:
        return cursor.execute(sql, params, prepare=prepare)

    executor = run
    for wrapper in reversed(connection.execute_wrappers):
        executor = partial(wrapper, executor)
    with connection.wrap_database_errors:
        executor(statement, params, False, {"connection": connection, "cursor": cursor})
    return cursor
