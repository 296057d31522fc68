"""Webhook notifications: endpoints, the event outbox, deliveries and every attempt."""

from __future__ import annotations

import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

from accounts.models import Account


class EventType(models.TextChoices):
    THRESHOLD_CROSSED = "threshold.crossed", "Threshold crossed"
    METER_FLUSHED = "meter.flushed", "Meter flushed"


class NotificationEndpoint(models.Model):
    """A webhook URL of an account, with its signing secret and the event types it receives.

    The secret (``whsec_…``) is the HMAC key of every delivery, so it must be readable by the
    worker: it is stored encrypted (``notifications.crypto``), never in clear and never hashed,
    and shown to the user once, when the endpoint is created.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="notification_endpoints")
    url = models.CharField(max_length=2048)
    secret_encrypted = models.TextField(editable=False)
    is_active = models.BooleanField(default=True)
    event_types = models.JSONField(default=list, help_text="Event types delivered to this endpoint.")
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["account", "is_active"], name="notif_endpoint_account_active")]

    def __str__(self) -> str:
        return self.url

    def receives(self, event_type: str) -> bool:
        return self.is_active and event_type in self.event_types


class NotificationEvent(models.Model):
    """The outbox: one thing that happened, to be delivered to every subscribed endpoint.

    ``id`` is the Standard Webhooks ``webhook-id``: the same for every endpoint and every retry,
    so receivers can use it as an idempotency key. Immutable once written.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="notification_events")
    event_type = models.CharField(max_length=50, choices=EventType.choices)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.id}"


class Delivery(models.Model):
    """One event to one endpoint: PENDING until a 2xx answer (SUCCEEDED) or the last attempt (FAILED)."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SUCCEEDED = "SUCCEEDED", "Succeeded"
        FAILED = "FAILED", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Denormalised from the event so tenancy filters (API, admin) need no join.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="notification_deliveries")
    event = models.ForeignKey(NotificationEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(NotificationEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(
        help_text="The attempt after which a failing delivery is FAILED; a manual retry raises it."
    )
    # When the next attempt is due. While an attempt is in flight it holds the claim's lease
    # expiry, so no other worker takes it; empty once the delivery is final.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "endpoint"], name="%(app_label)s_%(class)s_unique_event_endpoint"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["PENDING", "SUCCEEDED", "FAILED"]),
                name="%(app_label)s_%(class)s_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(attempt_count__lte=models.F("max_attempts")),
                name="%(app_label)s_%(class)s_attempts_within_max",
            ),
            models.CheckConstraint(
                condition=~Q(status="PENDING") | Q(next_attempt_at__isnull=False),
                name="%(app_label)s_%(class)s_pending_has_due_time",
            ),
        ]
        indexes = [
            # The claim's query: due PENDING deliveries in (next_attempt_at, id) order, LIMIT 1.
            # Both columns, so many deliveries due at the same instant need no sort.
            models.Index(
                fields=["next_attempt_at", "id"], condition=Q(status="PENDING"), name="notif_delivery_due"
            ),
            models.Index(fields=["endpoint", "-created_at"], name="notif_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One HTTP request of a delivery. Written when the attempt is claimed and completed with its outcome,
    so an attempt whose worker died is still visible. Unique per (delivery, number): no attempt is sent twice."""

    # Written at claim time and replaced by the outcome; left as is if the worker dies mid-attempt.
    NO_OUTCOME = "No outcome recorded: in flight, or its worker stopped before the attempt finished."
    LAST_INTERRUPTED = "The last attempt was interrupted: its worker stopped before it finished."

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "number"], name="%(app_label)s_%(class)s_unique_number"
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
