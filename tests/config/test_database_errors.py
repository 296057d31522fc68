"""Which database errors are 503 (try again later) and which are a logged 500 (issue 20).

Real errors from the real databases: a server that ends the session, a statement the server
refuses, a statement cancelled by its timeout, a locked SQLite file, malformed JSON on SQLite.
"""

from __future__ import annotations

import logging
import sqlite3
from types import SimpleNamespace

import pytest
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.utils import DatabaseErrorWrapper

from config.api.errors import database_unavailable, exception_to_response


def _raised(statement: str, *params) -> DatabaseError:
    with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)
    return caught.value


def _sqlite_error(script) -> DatabaseError:
    """A real sqlite3 error, wrapped as Django wraps a driver's errors."""
    raw = sqlite3.connect(":memory:", timeout=0)
    sqlite_wrapper = SimpleNamespace(Database=sqlite3, errors_occurred=False)
    try:
        with pytest.raises(DatabaseError) as caught, DatabaseErrorWrapper(sqlite_wrapper):
            script(raw)
    finally:
        raw.close()
    return caught.value


@pytest.mark.django_db(transaction=True)
def test_a_session_the_server_ends_is_503_with_retry_after():
    error = _raised("SELECT pg_terminate_backend(pg_backend_pid())")
    connection.close()

    response = exception_to_response(error)

    assert isinstance(error, OperationalError) and database_unavailable(error)
    assert response.status_code == 503 and int(response["Retry-After"]) > 0


@pytest.mark.django_db
def test_a_statement_the_server_refuses_is_a_logged_500(caplog):
    error = _raised("SELECT 1 / 0")

    with caplog.at_level(logging.ERROR, logger="config.api.errors"):
        response = exception_to_response(error)

    assert response.status_code == 500 and "Retry-After" not in response
    assert any(record.exc_info for record in caplog.records if record.levelno >= logging.ERROR)


@pytest.mark.django_db
def test_a_statement_cancelled_by_its_timeout_is_500_not_an_invitation_to_retry(caplog):
    with pytest.raises(OperationalError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 1")
        cursor.execute("SELECT pg_sleep(1)")

    assert not database_unavailable(caught.value)
    with caplog.at_level(logging.ERROR, logger="config.api.errors"):
        assert exception_to_response(caught.value).status_code == 500


def test_sqlite_malformed_json_is_500_and_a_locked_file_is_503(tmp_path):
    malformed = _sqlite_error(lambda raw: raw.execute("SELECT json_extract('eu', '$')"))
    path = str(tmp_path / "locked.sqlite3")
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")

    def write(_):
        other = sqlite3.connect(path, timeout=0)
        try:
            other.execute("INSERT INTO t VALUES (1)")
        finally:
            other.close()

    try:
        locked = _sqlite_error(write)
    finally:
        holder.rollback()
        holder.close()

    assert (isinstance(malformed, OperationalError), database_unavailable(malformed)) == (True, False)
    assert exception_to_response(malformed).status_code == 500
    assert database_unavailable(locked)
    assert exception_to_response(locked).status_code == 503


def test_an_error_raised_as_a_lost_connection_without_a_driver_cause_is_503():
    assert exception_to_response(OperationalError("connection refused")).status_code == 503
