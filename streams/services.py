"""Every write to solutions, streams and stream versions."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import Account
from config.api.errors import ValidationFailed
from config.api.principal import Principal
from streams.config import NAME_MAX_LENGTH, StreamConfig, stream_config_parse, tag_validate
from streams.engine import collection_seam, schedules
from streams.engine.stores import aggregation_stores_prune, aggregation_stores_sync
from streams.exceptions import (
    NodeDeletionNotAllowed,
    SolutionInUse,
    SolutionNameExists,
    SolutionNotFound,
    StreamNameExists,
    StreamTagExists,
)
from streams.models import Solution, Stream, StreamResourceRef, StreamVersion, StreamVersionResourceRef

MAX_COPIES = 1000


class OnNameConflict(enum.StrEnum):
    OVERWRITE = "overwrite"
    CREATE_NEW = "create-new"
    SKIP = "skip"


class ImportAction(enum.StrEnum):
    CREATED = "created"
    OVERWRITTEN = "overwritten"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class StreamImportResult:
    action: ImportAction
    stream: Stream
    tag: str | None


def actor_for_principal(principal: Principal) -> dict[str, str]:
    """``createdBy``/``updatedBy`` of an API call: the OAuth client id (or the API key's id)."""
    kind, _, identifier = principal.client_key.partition(":")
    return {"type": "client" if kind == "client" else "apiKey", "id": identifier}


def actor_for_user(user) -> dict[str, str]:
    """``createdBy``/``updatedBy`` of an admin action: the admin username."""
    return {"type": "user", "id": user.get_username()}


# --- Solutions -----------------------------------------------------------------------------------


def _solution_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed.for_field("name", "A solution name is 1 to 100 characters.")
    return name


@transaction.atomic
def solution_create(*, account: Account, name: str, solution_id: uuid.UUID | None = None) -> Solution:
    name = _solution_name(name)
    if Solution.objects.filter(account=account, name=name).exists():
        raise SolutionNameExists()
    return Solution.objects.create(account=account, name=name, **({"id": solution_id} if solution_id else {}))


@transaction.atomic
def solution_rename(*, solution: Solution, name: str) -> Solution:
    name = _solution_name(name)
    if Solution.objects.filter(account_id=solution.account_id, name=name).exclude(pk=solution.pk).exists():
        raise SolutionNameExists()
    solution.name = name
    solution.save(update_fields=["name"])
    return solution


@transaction.atomic
def solution_delete(*, solution: Solution) -> None:
    """Deletes an empty solution; one that still holds streams is 409 SOLUTION_IN_USE."""
    if Stream.objects.filter(solution=solution).exists():
        raise SolutionInUse()
    solution.delete()


# --- Streams -------------------------------------------------------------------------------------


def _solution_for_import(account: Account, solution_id: Any) -> Solution:
    """The account's solution with this id; an id no solution has yet creates one for the account
    (named after the id, renamed at will in the admin), so an API client needs nothing but the
    import. An id that another account's solution holds is 404 SOLUTION_NOT_FOUND: that solution
    is never reached, nothing of it is read or changed, and nothing is created."""
    if not isinstance(solution_id, str | uuid.UUID) or len(str(solution_id)) > 36:
        raise ValidationFailed.for_field(
            "solutionId", "solutionId is a solution id of at most 36 characters."
        )
    try:
        key = uuid.UUID(str(solution_id))
    except ValueError:
        raise ValidationFailed.for_field("solutionId", "solutionId must be a solution id (UUID).")
    solution = Solution.objects.filter(account=account, pk=key).first()
    if solution is not None:
        return solution
    if Solution.objects.filter(pk=key).exists():
        raise SolutionNotFound()
    try:
        with transaction.atomic():
            return Solution.objects.create(account=account, pk=key, name=_new_solution_name(account, key))
    except IntegrityError:
        # Created meanwhile by a concurrent import: the caller's own is used, another account's is 404.
        solution = Solution.objects.filter(account=account, pk=key).first()
        if solution is None:
            raise SolutionNotFound()
        return solution


def _new_solution_name(account: Account, key: uuid.UUID) -> str:
    """The name of a solution an import creates: its id, unique in the account like any name."""
    name = str(key)
    taken = set(
        Solution.objects.filter(account=account, name__startswith=name).values_list("name", flat=True)
    )
    number = 1
    candidate = name
    while candidate in taken:
        number += 1
        candidate = f"{name} ({number})"
    return candidate


def _copy_name(solution: Solution, name: str) -> str:
    """``<name> (Copy)``, then ``<name> (Copy 2)``… — the first one free in the solution."""
    taken = set(
        Stream.objects.filter(solution=solution, name__startswith=name[: NAME_MAX_LENGTH - 20]).values_list(
            "name", flat=True
        )
    )
    for number in range(1, MAX_COPIES + 1):
        suffix = " (Copy)" if number == 1 else f" (Copy {number})"
        candidate = name[: NAME_MAX_LENGTH - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise StreamNameExists(f"More than {MAX_COPIES} copies of this stream exist in the solution.")


def _meter_keys(config: StreamConfig, *, previous_nodes: list[dict], regenerate: bool) -> StreamConfig:
    """Give every meter node a meterKey: a new one when ``regenerate`` (a duplicated stream must
    not count into the original's meters); else the one it has, or the one the same node id had
    in ``previous_nodes`` (an overwrite that omits meterKey keeps its meters), or a new one."""
    kept = {
        node["id"]: node["config"]["meterKey"]
        for node in previous_nodes
        if node.get("type") == "meter" and (node.get("config") or {}).get("meterKey")
    }
    keys = {}
    for node_id in config.meter_node_ids():
        if regenerate:
            keys[node_id] = str(uuid.uuid4())
        elif not getattr(config.node_configs[node_id], "meter_key", None):
            keys[node_id] = kept.get(node_id) or str(uuid.uuid4())
    return config.with_meter_keys(keys) if keys else config


def _save_refs(stream: Stream, config: StreamConfig) -> None:
    StreamResourceRef.objects.filter(stream=stream).delete()
    StreamResourceRef.objects.bulk_create(
        [
            StreamResourceRef(stream=stream, resource_type=kind, resource_id=identifier)
            for kind, identifier in sorted(config.resource_refs())
        ]
    )


def _apply(stream: Stream, config: StreamConfig, tag: str | None, actor: dict[str, str]) -> None:
    stream.name = config.name
    stream.description = config.description
    stream.processing_type = config.processing_type
    stream.schema_version = config.schema_version
    stream.nodes = config.nodes
    stream.edges = config.edges
    stream.node_groups = config.node_groups
    stream.annotation = config.annotation
    stream.tag = tag
    stream.updated_by = actor


def _save_version(stream: Stream, config: StreamConfig, tag: str, actor: dict[str, str]) -> StreamVersion:
    version = StreamVersion.objects.create(
        account_id=stream.account_id,
        stream=stream,
        tag=tag,
        name=config.name,
        description=config.description,
        processing_type=config.processing_type,
        schema_version=config.schema_version,
        nodes=config.nodes,
        edges=config.edges,
        node_groups=config.node_groups,
        annotation=config.annotation,
        cas=stream.cas,
        created_by=actor,
    )
    StreamVersionResourceRef.objects.bulk_create(
        [
            StreamVersionResourceRef(version=version, resource_type=kind, resource_id=identifier)
            for kind, identifier in sorted(config.resource_refs())
        ]
    )
    return version


def _parse_conflict(on_name_conflict: str | None) -> OnNameConflict | None:
    if on_name_conflict is None:
        return None
    try:
        return OnNameConflict(on_name_conflict)
    except ValueError:
        raise ValidationFailed.for_field(
            "onNameConflict", "onNameConflict must be overwrite, create-new or skip."
        )


@transaction.atomic
def stream_import(
    *,
    account: Account,
    solution_id: str | uuid.UUID,
    stream_config: Any,
    on_name_conflict: str | None = None,
    allow_node_deletion: bool = False,
    tag: str | None = None,
    actor: dict[str, str],
) -> StreamImportResult:
    """Create or update a stream from a configuration (what ``GET /streams/{id}/export`` gives).

    A name clash in the solution is settled by ``on_name_conflict``: ``overwrite`` replaces the
    stream (refused with 409 if it drops existing node ids, unless ``allow_node_deletion``),
    ``create-new`` makes "<name> (Copy)" with new meter keys, ``skip`` returns the existing
    stream untouched; without a strategy a clash is 409 STREAM_NAME_EXISTS. A ``tag`` (argument,
    else the config's ``tag``) also saves a tagged version; a tag the stream already has is 409.
    """
    strategy = _parse_conflict(on_name_conflict)
    config = stream_config_parse(stream_config)
    if tag is not None:
        tag_validate(tag)
        config = dataclasses.replace(config, tag=tag)
    tag = config.tag
    solution = _solution_for_import(account, solution_id)
    existing = Stream.objects.select_for_update().filter(solution=solution, name=config.name).first()

    if existing is not None and strategy is None:
        raise StreamNameExists()
    if existing is not None and strategy is OnNameConflict.SKIP:
        return StreamImportResult(ImportAction.SKIPPED, existing, existing.tag)
    if existing is not None and strategy is OnNameConflict.OVERWRITE:
        dropped = sorted({node["id"] for node in existing.nodes} - {node["id"] for node in config.nodes})
        if dropped and not allow_node_deletion:
            raise NodeDeletionNotAllowed(
                details=[
                    {"field": "nodes", "message": f"Node '{node_id}' would be deleted."}
                    for node_id in dropped
                ]
            )
        if tag is not None and existing.versions.filter(tag=tag).exists():
            raise StreamTagExists(details=[{"field": "tag", "message": f"Tag '{tag}' exists."}])
        config = _meter_keys(config, previous_nodes=existing.nodes, regenerate=False)
        previous_nodes = existing.nodes
        _apply(existing, config, tag, actor)
        existing.cas += 1
        existing.save()
        stream, action = existing, ImportAction.OVERWRITTEN
    else:
        duplicate = existing is not None  # create-new with a clash: a copy with its own meter keys
        if duplicate:
            config = dataclasses.replace(config, name=_copy_name(solution, config.name))
        config = _meter_keys(config, previous_nodes=[], regenerate=duplicate)
        previous_nodes = []
        stream = Stream(account=account, solution=solution, cas=1, created_by=actor)
        _apply(stream, config, tag, actor)
        try:
            with transaction.atomic():
                stream.save(force_insert=True)
        except IntegrityError:
            raise StreamNameExists("A stream with this name was created meanwhile; retry the import.")
        action = ImportAction.CREATED
    _save_refs(stream, config)
    aggregation_stores_sync(stream=stream, config=config)  # the session lookup's key fields
    # The collectors it reads keep their batches for it; batch streams get their beat schedule.
    collection_seam.consumers_sync(
        account_id=stream.account_id, stream_id=stream.pk, previous_nodes=previous_nodes, nodes=stream.nodes
    )
    schedules.stream_schedule_sync(stream=stream)
    if tag is not None:
        _save_version(stream, config, tag, actor)
    return StreamImportResult(action, stream, tag)


@transaction.atomic
def stream_delete(*, stream: Stream) -> None:
    account_id = stream.account_id
    stream_id, nodes = stream.pk, stream.nodes
    stream.delete()
    collection_seam.consumers_sync(account_id=account_id, stream_id=stream_id, previous_nodes=nodes, nodes=[])
    schedules.stream_schedule_delete(stream_id=stream_id)
    aggregation_stores_prune(account_id=account_id)
