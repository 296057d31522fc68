"""Send data under ASGI: the common request served on the event loop (``config/fastpath.py``).

Settled from memory when the collector is cached ACTIVE for the caller's account and there is no
``Idempotency-Key`` (a replay needs the database's answer: the view serves it). The body is
checked with the view's ``decode_send_data`` and stored with one INSERT on an asynchronous
connection, grouped with concurrent requests (``collected_batch_append_async``).
"""

from __future__ import annotations

import re
import uuid

from collection import services
from collection.api.ingest import SEND_DATA_SCOPES, decode_send_data
from collection.selectors import active_collectors
from config.fastpath import HAND_OVER, FastRoute


def _settle(headers, match, principal):
    if "idempotency-key" in headers:
        return HAND_OVER
    try:
        collector_id = uuid.UUID(match.group(1))
    except ValueError:
        return HAND_OVER
    if active_collectors.get(collector_id) != principal.account_id:
        return HAND_OVER
    return collector_id


def _prepare(principal, headers, collector_id, body):
    return collector_id, decode_send_data(body)


async def _answer(principal, prepared):
    collector_id, (payload, size_bytes) = prepared
    result = await services.collected_batch_append_async(
        account_id=principal.account_id, collector_id=collector_id, payload=payload, size_bytes=size_bytes
    )
    return 200, b'{"ingestionId":"%s"}' % str(result.ingestion_id).encode("ascii"), []


SEND_DATA = FastRoute(
    pattern=re.compile(r"^/online-collection/collectors/([^/]+)/data$"),
    route="online-collection/collectors/<str:id>/data",
    scopes=SEND_DATA_SCOPES,
    rate_group="send_data",
    settle=_settle,
    prepare=_prepare,
    answer=_answer,
)
