"""Aggregation stores: which store ids an account's streams declare, with which key fields.

A ``scriptAggregator`` (or ``dataAggregator``) names its store by ``storeId``. The store's key
fields are what the session lookup endpoint needs to compute a session key, so the table is kept
in step with the streams: ``aggregation_stores_sync`` runs on every import, ``aggregation_stores_
prune`` after a stream is deleted. Streams of one account may share a store (same kind, same key
fields, in the same order); a declaration that disagrees with another stream's is 409
``AGGREGATION_STORE_CONFLICT``. A store no stream declares any more is deleted with its sessions.
"""

from __future__ import annotations

import uuid

from streams.config import StreamConfig
from streams.engine.context import RunContext
from streams.exceptions import AggregationStoreConflict
from streams.models import AggregationStore, ResourceType, Stream, StreamResourceRef
from streams.nodes import DataAggregatorConfig, ScriptAggregatorConfig

STORE_RESOURCE_TYPES = (ResourceType.SCRIPT_AGGREGATION_STORE, ResourceType.DATA_AGGREGATION_STORE)


def declared_stores(config: StreamConfig) -> dict[uuid.UUID, tuple[str, list[str], str]]:
    """``{storeId: (kind, keyFields, nodeId)}`` of the configuration's aggregator nodes."""
    declared: dict[uuid.UUID, tuple[str, list[str], str]] = {}
    for node in config.nodes:
        node_config = config.node_configs.get(node["id"])
        if isinstance(node_config, ScriptAggregatorConfig):
            kind = AggregationStore.Kind.SCRIPT
        elif isinstance(node_config, DataAggregatorConfig):
            kind = AggregationStore.Kind.DATA
        else:
            continue
        declaration = (kind.value, list(node_config.key_fields), node["id"])
        previous = declared.setdefault(node_config.store_id, declaration)
        if previous[:2] != declaration[:2]:
            raise AggregationStoreConflict(
                f"Nodes '{previous[2]}' and '{node['id']}' declare store {node_config.store_id} differently.",
                details=[
                    {"field": "nodes", "message": f"Store {node_config.store_id}: other key fields or type."}
                ],
            )
    return declared


def _conflict(store: AggregationStore, kind: str, key_fields: list[str]) -> AggregationStoreConflict:
    return AggregationStoreConflict(
        details=[
            {
                "field": "nodes",
                "message": f"Store {store.store_id} is declared by another stream as {store.kind} with key fields "
                f"{store.key_fields}; this stream declares {kind} with {key_fields}.",
            }
        ]
    )


def aggregation_stores_sync(*, stream: Stream, config: StreamConfig) -> None:
    """Record the stores ``stream`` declares (call inside the import's transaction, after the
    stream's resource references were saved)."""
    for store_id, (kind, key_fields, node_id) in sorted(declared_stores(config).items()):
        store = (
            AggregationStore.objects.select_for_update()
            .filter(account_id=stream.account_id, store_id=store_id)
            .first()
        )
        if store is None:
            AggregationStore.objects.create(
                account_id=stream.account_id,
                store_id=store_id,
                kind=kind,
                key_fields=key_fields,
                stream=stream,
                node_id=node_id,
            )
            continue
        if (store.kind, store.key_fields) != (kind, key_fields):
            shared = (
                StreamResourceRef.objects.filter(
                    resource_type__in=STORE_RESOURCE_TYPES,
                    resource_id=str(store_id),
                    stream__account_id=stream.account_id,
                )
                .exclude(stream=stream)
                .exists()
            )
            if shared:
                raise _conflict(store, kind, key_fields)
        store.kind, store.key_fields, store.stream, store.node_id = kind, key_fields, stream, node_id
        store.save(update_fields=["kind", "key_fields", "stream", "node_id", "updated_at"])
    aggregation_stores_prune(account_id=stream.account_id)


def aggregation_stores_prune(*, account_id: uuid.UUID) -> int:
    """Delete the account's stores no stream declares any more (and their sessions)."""
    declared = set(
        StreamResourceRef.objects.filter(
            resource_type__in=STORE_RESOURCE_TYPES, stream__account_id=account_id
        ).values_list("resource_id", flat=True)
    )
    orphans = [
        store.pk
        for store in AggregationStore.objects.filter(account_id=account_id).only("store_id")
        if str(store.store_id) not in declared
    ]
    if orphans:
        AggregationStore.objects.filter(pk__in=orphans).delete()
    return len(orphans)


def aggregation_store_for_run(
    *, context: RunContext, store_id: uuid.UUID, kind: str, key_fields: list[str], node_id: str
) -> AggregationStore | None:
    """The node's store; a real run registers it if the stream was imported before stores were
    tracked (a dry run only reads: ``None`` then means "no sessions yet")."""
    store = AggregationStore.objects.filter(account_id=context.account_id, store_id=store_id).first()
    if store is None and not context.dry_run:
        store, _ = AggregationStore.objects.get_or_create(
            account_id=context.account_id,
            store_id=store_id,
            defaults={"kind": kind, "key_fields": key_fields, "stream": context.stream, "node_id": node_id},
        )
    return store
