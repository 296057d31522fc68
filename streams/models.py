"""Solutions, streams (graphs of nodes) and their tagged versions."""

from __future__ import annotations

import uuid
from datetime import UTC

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
    processing_type = models.CharField(
        max_length=10, choices=ProcessingType.choices, default=ProcessingType.BATCH
    )
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
            models.UniqueConstraint(
                fields=["solution", "name"], name="%(app_label)s_%(class)s_unique_name_in_solution"
            ),
            models.CheckConstraint(
                condition=Q(processing_type__in=["batch", "realtime"]),
                name="%(app_label)s_%(class)s_processing_type_valid",
            ),
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
            models.UniqueConstraint(
                fields=["stream", "resource_type", "resource_id"], name="%(app_label)s_%(class)s_unique_ref"
            ),
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
            models.UniqueConstraint(
                fields=["version", "resource_type", "resource_id"], name="%(app_label)s_%(class)s_unique_ref"
            ),
        ]
        indexes = [models.Index(fields=["resource_type", "resource_id"], name="streams_version_ref_lookup")]

    def __str__(self) -> str:
        return f"{self.resource_type}:{self.resource_id}"


# --- The stream engine: runs, aggregation stores and sessions, deduplication keys, inspected records


class StreamRun(models.Model):
    """One execution of a stream's graph over a set of records (a collected batch, a schedule's
    new data, sessions that timed out, or records given by hand).

    ``node_counts`` is ``{nodeId: {"in": n, "out": n, "rejected": n}}``; ``rejections`` keeps the
    first ``REJECTIONS_KEPT`` rejected records with their node and reason. ``records_out`` counts
    what left the graph's last nodes. ``source_first_sequence``/``source_last_sequence`` are the
    collected batches the run consumed (none for other triggers).
    """

    REJECTIONS_KEPT = 100

    class Trigger(models.TextChoices):
        REALTIME = "realtime"
        SCHEDULE = "schedule"
        MANUAL = "manual"
        SESSION_TIMEOUT = "sessionTimeout", "session timeout"
        # A flush's metered records delivered to a Meter processor's downstream nodes.
        FLUSH = "flush"
        # Previews run dry and are never stored; the value names them in engine results.
        PREVIEW = "preview"

    class Status(models.TextChoices):
        RUNNING = "RUNNING"
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="stream_runs")
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="runs")
    stream_cas = models.PositiveIntegerField(help_text="The stream's cas (configuration save) that ran.")
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    records_in = models.PositiveIntegerField(default=0)
    records_out = models.PositiveIntegerField(default=0)
    records_rejected = models.PositiveIntegerField(default=0)
    node_counts = models.JSONField(default=dict)
    rejections = models.JSONField(default=list)
    error = models.TextField(blank=True, default="")
    source_first_sequence = models.BigIntegerField(null=True, blank=True)
    source_last_sequence = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["RUNNING", "SUCCEEDED", "FAILED"]),
                name="%(app_label)s_%(class)s_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=models.F("started_at")),
                name="%(app_label)s_%(class)s_finished_after_start",
            ),
        ]
        indexes = [
            models.Index(fields=["stream", "-started_at"], name="streams_run_stream_recent"),
            models.Index(fields=["account", "status"], name="streams_run_account_status"),
            # The abandoned-runs sweep: only the few RUNNING rows are indexed.
            models.Index(
                fields=["started_at"], condition=Q(status="RUNNING"), name="streams_run_running_started"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream} {self.trigger} {self.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC {self.status}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class AggregationStore(models.Model):
    """An aggregation store a stream's ``scriptAggregator`` (or ``dataAggregator``) declares with
    its ``storeId``. Maintained on every import; its ``key_fields`` are how the session lookup
    endpoint computes a session key. Streams of one account may share a store only with the same
    kind and key fields; ``stream``/``node_id`` name the latest declaration."""

    class Kind(models.TextChoices):
        SCRIPT = "script"
        DATA = "data"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.CASCADE, related_name="aggregation_stores"
    )
    store_id = models.UUIDField(help_text="The storeId of the aggregator node.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    key_fields = models.JSONField(default=list)
    stream = models.ForeignKey(
        Stream, on_delete=models.SET_NULL, null=True, blank=True, related_name="aggregation_stores"
    )
    node_id = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["store_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "store_id"], name="%(app_label)s_%(class)s_unique_store"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["script", "data"]), name="%(app_label)s_%(class)s_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.store_id} ({', '.join(self.key_fields)})"


class AggregationSession(models.Model):
    """One session of an aggregation store: the state an aggregator keeps for one key.

    ``key`` is ``streams.engine.keys.session_key(field_values)``. ``data`` is what the script (or
    the aggregations) computed so far, ``meta`` the bookkeeping (record count, partial averages).
    When ``timeout_at`` passes, the beat sweep emits the session to the nodes after ``node_id`` in
    ``stream`` and deletes it in the same transaction (exactly once).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.CASCADE, related_name="aggregation_sessions"
    )
    store = models.ForeignKey(AggregationStore, on_delete=models.CASCADE, related_name="sessions")
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="aggregation_sessions")
    node_id = models.CharField(max_length=100)
    key = models.CharField(max_length=64)
    field_values = models.JSONField(default=list)
    data = models.JSONField(default=dict)
    meta = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    timeout_at = models.DateTimeField()

    class Meta:
        ordering = ["timeout_at", "key"]
        constraints = [
            models.UniqueConstraint(fields=["store", "key"], name="%(app_label)s_%(class)s_unique_key"),
        ]
        indexes = [models.Index(fields=["timeout_at"], name="streams_session_timeout")]

    def __str__(self) -> str:
        return " / ".join(map(str, self.field_values))


class StreamDedupKey(models.Model):
    """A key a ``deduplicate`` node has seen: a record with the same key before ``expires_at`` is
    dropped, in this run or any later one. Rows past ``expires_at`` are reused and purged."""

    id = models.BigAutoField(primary_key=True)
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="dedup_keys")
    node_id = models.CharField(max_length=100)
    key = models.CharField(max_length=64)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "node_id", "key"], name="%(app_label)s_%(class)s_unique_key"
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="streams_dedup_expiry")]

    def __str__(self) -> str:
        return f"{self.node_id}:{self.key}"


class InspectRecord(models.Model):
    """One of the last records an ``inspect`` node let through (it keeps ``keepLast``)."""

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="inspect_records")
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="inspect_records")
    node_id = models.CharField(max_length=100)
    run = models.ForeignKey(StreamRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    record = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["stream", "node_id", "-id"], name="streams_inspect_latest")]

    def __str__(self) -> str:
        return f"{self.node_id} #{self.pk}"


class FlushDelivery(models.Model):
    """Metered records a flush sent to one Meter processor's downstream nodes, waiting to be
    delivered (a durable outbox).

    Written in the flush's own transaction (the period-end sweep's, or the stream execution's),
    so a flush that commits always has its delivery, and one that rolls back has none. A worker
    delivers the rows of one (stream, node) in ``id`` order: it runs the downstream nodes over
    the records and deletes the rows in the same transaction, so each reaches them exactly once
    (an ``httpForwarder`` among them queues the records in ``OutputDelivery`` in that same
    transaction). A failed delivery stays, with its error, until ``next_attempt_at``.
    """

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+")
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="flush_deliveries")
    node_id = models.CharField(
        max_length=100, help_text="The Meter processor whose downstream nodes get the records."
    )
    records = models.JSONField(default=list)
    record_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "flush delivery"
        verbose_name_plural = "flush deliveries"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["stream", "node_id", "id"], name="streams_flush_delivery_queue"),
            models.Index(fields=["next_attempt_at"], name="streams_flush_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.node_id}: {self.record_count} records"


class OutputDelivery(models.Model):
    """Records an output node (``httpForwarder``) of a run is to send: the outputs' durable outbox.

    Written in the run's own transaction, so a run that commits always has its deliveries and one
    that rolls back has none; sent after the commit by a worker (``streams.engine.deliveries``),
    never inside a run. One row is one request: ``body`` is the JSON array of up to 500 records,
    encoded once when the run wrote it. ``delivery_id`` goes out as the ``Delivery-Id`` header on
    every attempt, so a receiver that sees a request twice (a worker killed after sending) can
    tell. The rows of one (stream, node) are sent in ``id`` order, one at a time: the oldest
    PENDING row is the only one attempted. After ``max_attempts`` failed attempts a row is DEAD
    (the dead letter): the queue goes on without it, and "retry now" makes it PENDING again.
    """

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        DELIVERED = "DELIVERED", "Delivered"
        DEAD = "DEAD", "Dead letter"

    # Written when an attempt is claimed, replaced by its outcome; left if the worker dies mid-send.
    IN_FLIGHT = "An attempt is in flight, or its worker stopped before it finished."

    id = models.BigAutoField(primary_key=True)
    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+")
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="output_deliveries")
    node_id = models.CharField(max_length=100, help_text="The output node that sends the records.")
    run = models.ForeignKey(StreamRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    body = models.TextField(help_text="The request body (a JSON array); emptied once delivered.")
    record_count = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    # When the next attempt is due; while an attempt is in flight, the end of its lease. Empty
    # once the delivery is final (DELIVERED or DEAD).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "output delivery"
        verbose_name_plural = "output deliveries"
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["PENDING", "DELIVERED", "DEAD"]),
                name="%(app_label)s_%(class)s_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="PENDING") | Q(next_attempt_at__isnull=False),
                name="%(app_label)s_%(class)s_pending_has_due_time",
            ),
            models.CheckConstraint(
                condition=Q(attempts__lte=models.F("max_attempts")),
                name="%(app_label)s_%(class)s_attempts_within_max",
            ),
        ]
        indexes = [
            # The head of each output's queue: its oldest PENDING row.
            models.Index(
                fields=["stream", "node_id", "id"],
                condition=Q(status="PENDING"),
                name="streams_output_queue",
            ),
            # The sweep: PENDING rows due now.
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="PENDING"), name="streams_output_due"
            ),
            # A stream's deliveries, newest first (API, admin), and the purge of delivered rows.
            models.Index(fields=["stream", "-id"], name="streams_output_recent"),
            models.Index(
                fields=["delivered_at"], condition=Q(status="DELIVERED"), name="streams_output_delivered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.node_id}: {self.record_count} records ({self.status})"
