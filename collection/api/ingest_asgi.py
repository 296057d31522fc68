"""Send data on the event loop (``config.hot.loop``): the common request, stored without a thread.

Settled from memory when the collector is cached ACTIVE for the caller's account and there is no
``Idempotency-Key`` (a replay needs the database's answer: the view serves it). The batch is
stored with the service's own append statement (``collection.services.append_sql``) on an
asynchronous connection (``config.hot.database``), in autocommit, so it is durable when the
request is answered; requests whose append arrives while the previous statement is in flight
share the next one (``config.hot.grouping``). Readers are woken after commit, batched.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from collection import services
from collection.exceptions import CollectorNotFound
from collection.selectors import active_collector_account, active_collectors, collector_lock_key
from config.api.principal import Principal
from config.hot import database
from config.hot.grouping import Debounced, PerLoop
from config.hot.pipeline import Answer, HandOver

# Readers are woken at most this often for whatever collectors got batches meanwhile; their
# sweeps catch up if a wake-up fails.
WAKEUP_DELAY_SECONDS = 0.05


def ingestion_answer(ingestion_id: uuid.UUID, *, replayed: bool = False) -> Answer:
    return (
        200,
        b'{"ingestionId":"%s"}' % str(ingestion_id).encode("ascii"),
        {"Idempotent-Replayed": "true"} if replayed else {},
    )


def settle_on_loop(principal: Principal, work: Any) -> Any:
    if work.idempotency_key is not None:
        raise HandOver()
    account = active_collectors.get(
        work.collector_id, refresh=lambda: active_collector_account(work.collector_id)
    )
    if account != principal.account_id:  # the view looks the collector up, and caches it ACTIVE
        raise HandOver(key=("collector", work.collector_id))
    return work


async def append_on_loop(principal: Principal, work: Any) -> Answer:
    """``collected_batch_append`` for a collector cached ACTIVE, without an idempotency key.
    Database errors are psycopg's (the pipeline answers 503)."""
    ingestion_id = uuid.uuid4()
    lock_class, lock_object = collector_lock_key(work.collector_id)
    row = (
        str(ingestion_id),
        str(principal.account_id),
        str(work.collector_id),
        work.payload,
        work.size_bytes,
        None,
        None,
        lock_class,
        lock_object,
    )
    try:
        await _appends.submit(row)
    except psycopg.IntegrityError:
        # The foreign key refused it: the collector was purged after it was cached as ACTIVE.
        active_collectors.forget(work.collector_id)
        raise CollectorNotFound()
    if services.BATCH_STORED_HOOKS:
        _wakeups.add(work.collector_id)
    return ingestion_answer(ingestion_id)


async def _append_group(rows: list[tuple]) -> list:
    """One INSERT and one commit for the requests whose append arrived while the previous
    statement was in flight. None per row written, or its exception; when the foreign key refuses
    the group (a collector purged after it was cached), each row is tried alone so only its
    requests fail."""

    async def insert(chunk: list[tuple]) -> None:
        async with database.connection() as connection:
            await connection.execute(
                services.append_sql(len(chunk), "%s"), [value for row in chunk for value in row], prepare=True
            )

    try:
        await insert(rows)
        return [None] * len(rows)
    except psycopg.IntegrityError as exc:
        if len(rows) == 1:
            return [exc]
    outcomes: list = []
    for row in rows:
        try:
            await insert([row])
            outcomes.append(None)
        except psycopg.IntegrityError as exc:
            outcomes.append(exc)
    return outcomes


def _wake(collector_ids: set[uuid.UUID]) -> None:
    for collector_id in collector_ids:
        services.batch_stored(collector_id)


_appends = PerLoop(_append_group)
_wakeups = Debounced(_wake, delay=WAKEUP_DELAY_SECONDS)
