"""Solutions, streams (graphs of nodes) and their tagged versions."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class Solution(models.Model):
    """A folder of streams. Streams are imported into a solution; names are unique within it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="solutions")
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="%(app_label)s_%(class)s_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Stream(models.Model):
    """The autosaved (latest) configuration of a stream: nodes, edges and what the UI draws.

    ``cas`` counts saves (1 on creation, +1 on every import that overwrites it). ``tag`` is the tag
    of the save that produced this configuration, or null when that save was untagged.
    ``created_by``/``updated_by`` are ``{"type": "client"|"apiKey"|"user", "id": …}``.
    """

    class ProcessingType(models.TextChoices):
        BATCH = "batch"
        REALTIME = "realtime"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="streams")
    solution = models.ForeignKey(Solution, on_delete=models.PROTECT, related_name="streams")
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=1024, blank=True, default="")
    processing_type = models.CharField(max_length=10, choices=ProcessingType.choices, default=ProcessingType.BATCH)
    schema_version = models.PositiveSmallIntegerField(default=1)
    nodes = models.JSONField(default=list)
    edges = models.JSONField(default=list)
    node_groups = models.JSONField(default=list)
    annotation = models.JSONField(default=dict)
    cas = models.PositiveIntegerField(default=1)
    tag = models.CharField(max_length=100, null=True, blank=True)
    created_by = models.JSONField(default=dict)
    updated_by = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["solution", "name"], name="%(app_label)s_%(class)s_unique_name_in_solution"),
            models.CheckConstraint(condition=Q(processing_type__in=["batch", "realtime"]),
                                   name="%(app_label)s_%(class)s_processing_type_valid"),
            models.CheckConstraint(condition=Q(cas__gte=1), name="%(app_label)s_%(class)s_cas_positive"),
        ]
        indexes = [
            # The list endpoint's cursor order, per account.
            models.Index(fields=["account", "created_at", "id"], name="streams_stream_account_cursor"),
        ]

    def __str__(self) -> str:
        return self.name


class StreamVersion(models.Model):
    """A tagged snapshot of a stream's configuration, saved by a tagged import. Never changed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="stream_versions")
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="versions")
    tag = models.CharField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=1024, blank=True, default="")
    processing_type = models.CharField(max_length=10, choices=Stream.ProcessingType.choices)
    schema_version = models.PositiveSmallIntegerField(default=1)
    nodes = models.JSONField(default=list)
    edges = models.JSONField(default=list)
    node_groups = models.JSONField(default=list)
    annotation = models.JSONField(default=dict)
    cas = models.PositiveIntegerField(help_text="The stream's cas when this version was saved.")
    created_by = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["stream", "tag"], name="%(app_label)s_%(class)s_unique_tag"),
        ]

    def __str__(self) -> str:
        return f"{self.stream.name} @ {self.tag}"


class ResourceType(models.TextChoices):
    METER_KEY = "meterKey"
    ONLINE_COLLECTOR = "onlineCollector"
    SCRIPT_AGGREGATION_STORE = "scriptAggregationStore"
    DATA_AGGREGATION_STORE = "dataAggregationStore"


class StreamResourceRef(models.Model):
    """A resource (collector, meter key, store) the stream's current configuration uses.

    Derived from the nodes on every save, so ``resourceRefs`` filters and "which streams read
    this collector" are indexed queries on both PostgreSQL and SQLite.
    """

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="resource_refs")
    resource_type = models.CharField(max_length=30, choices=ResourceType.choices)
    resource_id = models.CharField(max_length=100)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "resource_type", "resource_id"],
                                    name="%(app_label)s_%(class)s_unique_ref"),
        ]
        indexes = [models.Index(fields=["resource_type", "resource_id"], name="streams_ref_lookup")]

    def __str__(self) -> str:
        return f"{self.resource_type}:{self.resource_id}"


class StreamVersionResourceRef(models.Model):
    """A resource a tagged version's configuration uses (the versions' ``resourceRefs`` filter)."""

    version = models.ForeignKey(StreamVersion, on_delete=models.CASCADE, related_name="resource_refs")
    resource_type = models.CharField(max_length=30, choices=ResourceType.choices)
    resource_id = models.CharField(max_length=100)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "resource_type", "resource_id"],
                                    name="%(app_label)s_%(class)s_unique_ref"),
        ]
        indexes = [models.Index(fields=["resource_type", "resource_id"], name="streams_version_ref_lookup")]

    def __str__(self) -> str:
        return f"{self.resource_type}:{self.resource_id}"
