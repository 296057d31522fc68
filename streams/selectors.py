"""Reads: stream lists (cursor pages), versions, resource-reference filters, snapshots."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from config.api.errors import ValidationFailed
from streams.exceptions import StreamVersionNotFound
from streams.models import ResourceType, Stream, StreamResourceRef, StreamVersion, StreamVersionResourceRef

ANY_ID = "*"


@dataclass(frozen=True)
class ResourceRef:
    resource_type: str
    resource_id: str  # ``*`` for any id of the type

    def q(self) -> Q:
        if self.resource_id == ANY_ID:
            return Q(resource_type=self.resource_type)
        return Q(resource_type=self.resource_type, resource_id=self.resource_id)


# One reference: <resourceType>:<resourceId>, the id without spaces, control characters or commas.
RESOURCE_REF = rf"(?:{'|'.join(ResourceType.values)}):[^\x00-\x20\x7f,]+"
# One ``resourceRefs`` value: references separated by commas (or none), as the schema says it.
RESOURCE_REFS_PATTERN = rf"^(?:{RESOURCE_REF}(?:,{RESOURCE_REF})*)?$"
_RESOURCE_REF_RE = re.compile(RESOURCE_REF)


def resource_refs_parse(values: Iterable[str]) -> list[ResourceRef]:
    """``["onlineCollector:8a76…", "meterKey:*"]`` (repeated parameters, or comma-separated).
    An empty value (``?resourceRefs=``) filters nothing."""
    refs: list[ResourceRef] = []
    for value in values:
        if value == "":
            continue
        for item in value.split(","):
            if not _RESOURCE_REF_RE.fullmatch(item):
                raise ValidationFailed.for_field(
                    "resourceRefs",
                    f"'{item}' is not <resourceType>:<resourceId> with resourceType one of "
                    f"{', '.join(ResourceType.values)} (resourceId * for any; no spaces).",
                )
            resource_type, _, resource_id = item.partition(":")
            refs.append(ResourceRef(resource_type, resource_id))
    return refs


def _refs_q(refs: list[ResourceRef]) -> Q:
    condition = Q()
    for ref in refs:
        condition |= ref.q()
    return condition


# --- Cursor pagination ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        # The shape of the seed's sample cursor, with microseconds so no two rows share a position.
        payload = {
            "createdAt": self.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "id": str(self.id),
        }
        return (
            base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
        )

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        try:
            padded = raw + "=" * (-len(raw) % 4)
            payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
            created_at = datetime.fromisoformat(payload["createdAt"].replace("Z", "+00:00"))
            if created_at.tzinfo is None:
                raise ValueError("naive")
            return cls(created_at=created_at, id=uuid.UUID(payload["id"]))
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeError, binascii.Error):
            raise ValidationFailed.for_field("cursor", "cursor is not a nextCursor this endpoint returned.")


@dataclass(frozen=True)
class StreamPage:
    streams: list[Stream]
    next_cursor: str | None


def stream_list(
    *,
    account_id: uuid.UUID,
    solution_id: uuid.UUID | None = None,
    name: str | None = None,
    resource_refs: list[ResourceRef] | None = None,
    cursor: Cursor | None = None,
    limit: int = 20,
) -> StreamPage:
    """Streams oldest first (createdAt, then id). A page starts after the cursor's position, so
    streams created while a client pages through appear at the end, never shifting a page."""
    queryset = Stream.objects.filter(account_id=account_id)
    if solution_id is not None:
        queryset = queryset.filter(solution_id=solution_id)
    if name is not None:
        # Exact and case-sensitive on both databases (SQLite's = is case-sensitive for TEXT).
        queryset = queryset.filter(name=name)
    if resource_refs:
        queryset = queryset.filter(
            Exists(StreamResourceRef.objects.filter(_refs_q(resource_refs), stream=OuterRef("pk")))
        )
    if cursor is not None:
        queryset = queryset.filter(
            Q(created_at__gt=cursor.created_at) | Q(created_at=cursor.created_at, id__gt=cursor.id)
        )
    rows = list(queryset.order_by("created_at", "id")[: limit + 1])
    next_cursor = (
        Cursor(rows[limit - 1].created_at, rows[limit - 1].id).encode() if len(rows) > limit else None
    )
    return StreamPage(streams=rows[:limit], next_cursor=next_cursor)


def stream_versions(
    *, stream: Stream, resource_refs: list[ResourceRef] | None = None
) -> QuerySet[StreamVersion]:
    """A stream's tagged versions, newest first."""
    queryset = StreamVersion.objects.filter(stream=stream)
    if resource_refs:
        queryset = queryset.filter(
            Exists(StreamVersionResourceRef.objects.filter(_refs_q(resource_refs), version=OuterRef("pk")))
        )
    return queryset.order_by("-created_at", "-id")


def stream_version_get(*, stream: Stream, tag: str) -> StreamVersion:
    version = StreamVersion.objects.filter(stream=stream, tag=tag).first()
    if version is None:
        raise StreamVersionNotFound(details=[{"field": "tag", "message": f"No version tagged '{tag}'."}])
    return version


# --- Snapshots: the stream, or one of its versions, as the API shows it --------------------------


@dataclass(frozen=True)
class StreamSnapshot:
    """A stream's configuration and metadata; for a version, its own content, cas and save."""

    id: uuid.UUID
    solution_id: uuid.UUID
    name: str
    description: str
    processing_type: str
    schema_version: int
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    node_groups: list[dict[str, Any]]
    annotation: dict[str, Any]
    cas: int
    tag: str | None
    created_at: datetime
    created_by: dict[str, str]
    updated_at: datetime
    updated_by: dict[str, str]

    def export(self) -> dict[str, Any]:
        """The importable configuration: no ids, no server fields."""
        return {
            "annotation": self.annotation,
            "description": self.description,
            "edges": self.edges,
            "name": self.name,
            "nodeGroups": self.node_groups,
            "nodes": self.nodes,
            "processingType": self.processing_type,
            "schemaVersion": self.schema_version,
            "tag": self.tag,
        }


def stream_snapshot(stream: Stream, version: StreamVersion | None = None) -> StreamSnapshot:
    source = version or stream
    return StreamSnapshot(
        id=stream.id,
        solution_id=stream.solution_id,
        name=source.name,
        description=source.description,
        processing_type=source.processing_type,
        schema_version=source.schema_version,
        nodes=source.nodes,
        edges=source.edges,
        node_groups=source.node_groups,
        annotation=source.annotation,
        cas=source.cas,
        tag=version.tag if version else stream.tag,
        created_at=stream.created_at,
        created_by=stream.created_by,
        updated_at=version.created_at if version else stream.updated_at,
        updated_by=version.created_by if version else stream.updated_by,
    )


def stream_snapshot_for_tag(stream: Stream, tag: str | None) -> StreamSnapshot:
    """The latest (autosaved) configuration, or the version tagged ``tag``."""
    if tag is None or tag == "":
        return stream_snapshot(stream)
    return stream_snapshot(stream, stream_version_get(stream=stream, tag=tag))


# --- The stream's admin page ----------------------------------------------------------------


def stream_recent_runs(*, stream: Stream, limit: int = 5) -> list:
    """The stream's latest runs, newest first."""
    from streams.models import StreamRun

    return list(StreamRun.objects.filter(stream=stream).order_by("-started_at", "-id")[:limit])


@dataclass(frozen=True)
class MeterNodeMeters:
    """A Meter processor of the stream and the meters of its meterKey (the first ``limit``)."""

    node_id: str
    name: str
    meter_key: str
    meters: list


def stream_meter_nodes(*, stream: Stream, limit: int = 50) -> list[MeterNodeMeters]:
    """Per meter node: the account's meters counted under its meterKey, by meter type and customer."""
    from metering.models import Meter

    found = []
    for node in stream.nodes:
        if node.get("type") != "meter":
            continue
        meter_key = (node.get("config") or {}).get("meterKey") or "default"
        meters = (
            Meter.objects.filter(account_id=stream.account_id, meter_key=meter_key)
            .select_related("meter_type")
            .order_by("meter_type__name", "user_id")[:limit]
        )
        found.append(
            MeterNodeMeters(
                node_id=str(node.get("id", "")),
                name=str(node.get("name") or node.get("id", "")),
                meter_key=meter_key,
                meters=list(meters),
            )
        )
    return found


def stream_node_health(*, stream: Stream) -> dict[str, str]:
    """Each node's state from the stream's last run: ``failing`` (the run failed), ``warning``
    (it rejected records), ``ok`` (records went through), ``idle`` (none reached it); empty
    before the first run. The graph colours its nodes with it."""
    from streams.models import StreamRun

    last = StreamRun.objects.filter(stream=stream).order_by("-started_at", "-id").first()
    if last is None:
        return {}
    health = {}
    for node in stream.nodes:
        node_id = str(node.get("id"))
        counts = last.node_counts.get(node_id) or {}
        if counts.get("rejected"):
            health[node_id] = "warning"
        elif counts.get("in") or counts.get("out"):
            health[node_id] = "ok"
        else:
            health[node_id] = "idle"
    if last.status == StreamRun.Status.FAILED:
        failing = [node_id for node_id in health if f"node {node_id}:" in (last.error or "")]
        for node_id in failing or list(health):
            health[node_id] = "failing"
    return health
