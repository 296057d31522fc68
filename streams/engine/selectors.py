"""Reads of the stream engine's state: session lookup, recent runs."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from config.api.errors import ValidationFailed
from streams.engine.keys import session_key
from streams.exceptions import AggregationSessionNotFound, AggregationStoreNotFound
from streams.models import AggregationSession, AggregationStore, Stream, StreamRun


def aggregation_session_lookup(
    *, account_id: uuid.UUID, store_id: str, field_values: list[str]
) -> AggregationSession:
    """The session whose key the aggregator computed from these values (in key-field order).

    Another account's store, or an unknown one, is 404 ``AGGREGATION_STORE_NOT_FOUND``; a count of
    values different from the store's key fields is 400; no such session is 404
    ``AGGREGATION_SESSION_NOT_FOUND``."""
    try:
        store_uuid = uuid.UUID(str(store_id))
    except ValueError:
        raise AggregationStoreNotFound()
    store = AggregationStore.objects.filter(account_id=account_id, store_id=store_uuid).first()
    if store is None:
        raise AggregationStoreNotFound()
    if len(field_values) != len(store.key_fields):
        raise ValidationFailed.for_field(
            "fieldValues",
            f"The store's sessions are keyed by {len(store.key_fields)} field(s) ({', '.join(store.key_fields)}): "
            f"give that many fieldValues, in that order; got {len(field_values)}.",
        )
    session = AggregationSession.objects.filter(store=store, key=session_key(field_values)).first()
    if session is None:
        raise AggregationSessionNotFound()
    return session


def stream_runs_recent(*, stream: Stream, limit: int = 20) -> QuerySet[StreamRun]:
    return StreamRun.objects.filter(stream=stream).order_by("-started_at", "-id")[:limit]
