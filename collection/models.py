"""Online collectors, the append-only log of batches they receive, and the offsets of its readers.

The log is read in ``sequence`` order (a bigint identity). A sequence alone is not a safe offset
under concurrent inserts: a batch given a lower sequence can commit after one with a higher
sequence, and a reader that had already moved past the higher one would skip it. So on
PostgreSQL every insert holds a shared advisory lock on its collector from before it takes its
sequence until it commits, and a reader first takes that lock exclusively for an instant: once
it has it, every batch of the collector up to the highest sequence it then sees is committed,
and nothing can commit below it later. Readers read only up to that watermark. SQLite
serialises writers, so there the sequence order is the commit order.
"""

from __future__ import annotations

import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from accounts.models import Account

NAME_PATTERN = r"\A[\w\s().-]+\Z"


class Collector(models.Model):
    """An online collector: the endpoint usage is sent to and the log it is stored in."""

    class Status(models.TextChoices):
        CREATING = "CREATING", "Creating"
        ACTIVE = "ACTIVE", "Active"
        DELETING = "DELETING", "Deleting"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="collectors")
    name = models.CharField(max_length=80, validators=[RegexValidator(NAME_PATTERN)])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATING)
    # Lifetime totals of batches already pruned from the log (retained ones are counted live).
    pruned_batches = models.BigIntegerField(default=0, editable=False)
    pruned_bytes = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # A collector being deleted gives its name back at once.
            models.UniqueConstraint(
                fields=["account", "name"],
                condition=~Q(status="DELETING"),
                name="%(app_label)s_%(class)s_unique_name",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["CREATING", "ACTIVE", "DELETING"]),
                name="%(app_label)s_%(class)s_valid_status",
            ),
        ]
        indexes = [models.Index(fields=["status", "updated_at"], name="collection_collector_status")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class CollectedBatch(models.Model):
    """One accepted send-data request: the JSON text of its ``data`` value, exactly as received."""

    sequence = models.BigAutoField(primary_key=True)
    ingestion_id = models.UUIDField(unique=True, editable=False)
    # Indexes cost time on every send-data insert: the log is read through (collector, sequence),
    # so neither foreign key gets an index of its own. The migration adds a BRIN index on
    # received_at (PostgreSQL) for pruning.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", db_index=False)
    collector = models.ForeignKey(Collector, on_delete=models.CASCADE, related_name="batches", db_index=False)
    payload = models.TextField(help_text="The JSON text of the request's data value, as received.")
    size_bytes = models.PositiveIntegerField()
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    received_at = models.DateTimeField()

    class Meta:
        verbose_name = "collected batch"
        verbose_name_plural = "collected batches"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="%(app_label)s_%(class)s_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["collector", "sequence"], name="collection_batch_log_order"),
        ]

    def __str__(self) -> str:
        return f"batch {self.sequence} of {self.collector_id}"


class ConsumerOffset(models.Model):
    """How far one reader (``stream:<id>``) has consumed one collector's log.

    ``last_sequence`` is the sequence of the last batch consumed; 0 means nothing consumed yet.
    Pruning never deletes a batch a registered consumer has not passed.
    """

    collector = models.ForeignKey(Collector, on_delete=models.CASCADE, related_name="consumer_offsets")
    consumer = models.CharField(max_length=200)
    last_sequence = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["collector_id", "consumer"]
        constraints = [
            models.UniqueConstraint(
                fields=["collector", "consumer"], name="%(app_label)s_%(class)s_unique_consumer"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.consumer} @ {self.last_sequence}"
