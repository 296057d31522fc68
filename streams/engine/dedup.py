"""The deduplicate node's memory: one row per (stream, node, key) until ``expires_at``.

``keys_claim`` is one statement per batch: insert the keys, and on a conflict take over only a
row whose window has passed; the keys it returns are the ones not seen within the window. Keys
are inserted in sorted order so concurrent runs lock rows in the same order.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import connection

from streams.models import StreamDedupKey

SQLITE_CHUNK = 200
PURGE_BATCH = 5000


def _table() -> str:
    return connection.ops.quote_name(StreamDedupKey._meta.db_table)


def keys_claim(
    *, stream_id: uuid.UUID, node_id: str, keys: list[str], now: datetime, expires_at: datetime
) -> set[str]:
    """Record ``keys`` as seen until ``expires_at``; return those that were not seen before
    (or whose window had passed)."""
    if not keys:
        return set()
    table = _table()
    ordered = sorted(set(keys))
    fresh: set[str] = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"""INSERT INTO {table} (stream_id, node_id, "key", expires_at)
                    SELECT %s, %s, k, %s FROM unnest(%s::text[]) AS k
                    ON CONFLICT (stream_id, node_id, "key") DO UPDATE SET expires_at = EXCLUDED.expires_at
                    WHERE {table}.expires_at <= %s
                    RETURNING "key" """,  # noqa: S608
                [stream_id, node_id, expires_at, ordered, now],
            )
            fresh.update(row[0] for row in cursor.fetchall())
            return fresh
        # SQLite: values as Django stores them there (UUIDs as hex, datetimes as UTC text).
        stream_value = StreamDedupKey._meta.get_field("stream").get_db_prep_value(stream_id, connection)
        expiry_field = StreamDedupKey._meta.get_field("expires_at")
        expires_value = expiry_field.get_db_prep_value(expires_at, connection)
        now_value = expiry_field.get_db_prep_value(now, connection)
        for start in range(0, len(ordered), SQLITE_CHUNK):
            chunk = ordered[start : start + SQLITE_CHUNK]
            rows = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
            params: list = []
            for key in chunk:
                params += [stream_value, node_id, key, expires_value]
            cursor.execute(
                f"""INSERT INTO {table} (stream_id, node_id, "key", expires_at) VALUES {rows}
                    ON CONFLICT (stream_id, node_id, "key") DO UPDATE SET expires_at = excluded.expires_at
                    WHERE {table}.expires_at <= %s
                    RETURNING "key" """,  # noqa: S608
                params + [now_value],
            )
            fresh.update(row[0] for row in cursor.fetchall())
    return fresh


def keys_seen(*, stream_id: uuid.UUID, node_id: str, keys: list[str], now: datetime) -> set[str]:
    """The keys among ``keys`` still within their window (read only: previews)."""
    return set(
        StreamDedupKey.objects.filter(
            stream_id=stream_id, node_id=node_id, key__in=keys, expires_at__gt=now
        ).values_list("key", flat=True)
    )


def keys_purge(*, now: datetime, batch_size: int = PURGE_BATCH) -> int:
    """Delete up to ``batch_size`` keys whose window has passed; return how many."""
    ids = list(
        StreamDedupKey.objects.filter(expires_at__lte=now)
        .order_by("expires_at")
        .values_list("id", flat=True)[:batch_size]
    )
    if not ids:
        return 0
    deleted, _ = StreamDedupKey.objects.filter(id__in=ids, expires_at__lte=now).delete()
    return deleted
