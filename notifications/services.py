"""Every write of the notifications app: endpoints, publishing into the outbox, delivery attempts.

Delivery is at least once, with a stable ``webhook-id`` so receivers can deduplicate:

1. ``notification_publish`` runs inside the caller's transaction (the metering side calls it in
   the same transaction as the meter update): it writes the event and one PENDING delivery per
   subscribed endpoint, and enqueues a delivery task per delivery only once that transaction
   commits. A rollback leaves nothing behind and sends nothing.
2. ``delivery_attempt`` / ``delivery_sweep_due`` *claim* a due delivery in a short transaction
   (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, then a compare-and-set on
   ``attempt_count``): the attempt number is taken, an attempt row written, and
   ``next_attempt_at`` moved to a lease expiry, so no other worker can take it while the HTTP
   request runs outside any transaction. The outcome is written with another compare-and-set.
3. A worker that dies mid-attempt leaves the lease to expire; the sweep then claims the next
   attempt (the interrupted one stays recorded as such).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Account
from config.api.errors import ValidationFailed
from config.api.serializers import format_timestamp
from notifications import crypto, outbound
from notifications.exceptions import NotificationEndpointLimitReached, TargetNotAllowed, UnknownEventType
from notifications.models import Delivery, DeliveryAttempt, EventType, NotificationEndpoint, NotificationEvent

logger = logging.getLogger(__name__)

# Extra seconds a claim's lease lasts beyond the request's own total timeout.
CLAIM_LEASE_MARGIN_SECONDS = 60
# A claim fails at most this many unsendable deliveries (endpoint disabled…) before giving up.
MAX_SKIPPED_PER_CLAIM = 100
_UNSET: Any = object()


# --- Endpoints ------------------------------------------------------------------------------


def _validate_event_types(event_types: Sequence[str]) -> list[str]:
    if not isinstance(event_types, (list, tuple)) or not event_types:
        raise ValidationFailed.for_field("eventTypes", "At least one event type is required.")
    unknown = [value for value in event_types if value not in EventType.values]
    if unknown:
        raise ValidationFailed.for_field(
            "eventTypes",
            f"Unknown event type(s): {', '.join(map(str, unknown))}; allowed: {', '.join(EventType.values)}.",
            code="UNKNOWN_EVENT_TYPE",
        )
    return sorted(set(event_types))


def _validate_description(description: str) -> str:
    if len(description) > 200:
        raise ValidationFailed.for_field("description", "Ensure this field has no more than 200 characters.")
    return description


def _validate_url(url: str) -> str:
    # With the address check on, the host is resolved and every address checked now; at send
    # time it is checked again (DNS may change). With it off, no DNS is needed to register.
    outbound.validate_target_url(url, resolve=not settings.OUTBOUND_ALLOW_PRIVATE_TARGETS)
    return url


@transaction.atomic
def notification_endpoint_create(
    *, account: Account, url: str, event_types: Sequence[str], description: str = "", is_active: bool = True
) -> tuple[NotificationEndpoint, str]:
    """Register a webhook endpoint. Returns the signing secret: the only time it is given out in clear."""
    event_types = _validate_event_types(event_types)
    description = _validate_description(description)
    _validate_url(url)
    # Serialise creations per account so the limit holds under concurrent requests.
    Account.objects.select_for_update().filter(pk=account.pk).first()
    if (
        NotificationEndpoint.objects.filter(account=account).count()
        >= settings.NOTIFICATION_ENDPOINTS_MAX_PER_ACCOUNT
    ):
        raise NotificationEndpointLimitReached(
            f"An account can have at most {settings.NOTIFICATION_ENDPOINTS_MAX_PER_ACCOUNT} notification endpoints."
        )
    secret = crypto.secret_generate()
    endpoint = NotificationEndpoint.objects.create(
        account=account,
        url=url,
        event_types=event_types,
        description=description,
        is_active=is_active,
        secret_encrypted=crypto.secret_encrypt(secret),
    )
    return endpoint, secret


@transaction.atomic
def notification_endpoint_update(
    *,
    endpoint: NotificationEndpoint,
    url: str = _UNSET,
    event_types: Sequence[str] = _UNSET,
    description: str = _UNSET,
    is_active: bool = _UNSET,
) -> NotificationEndpoint:
    """Change an endpoint. A new URL is checked like a new registration."""
    if url is not _UNSET and url != endpoint.url:
        endpoint.url = _validate_url(url)
    if event_types is not _UNSET:
        endpoint.event_types = _validate_event_types(event_types)
    if description is not _UNSET:
        endpoint.description = _validate_description(description)
    if is_active is not _UNSET:
        endpoint.is_active = bool(is_active)
    endpoint.save()
    return endpoint


@transaction.atomic
def notification_endpoint_delete(*, endpoint: NotificationEndpoint) -> None:
    """Delete an endpoint with its deliveries and attempts (events stay: other endpoints may have them)."""
    endpoint.delete()


def notification_endpoint_secret(*, endpoint: NotificationEndpoint) -> str:
    """The endpoint's secret in clear, for signing (never for display after creation)."""
    return crypto.secret_decrypt(endpoint.secret_encrypted)


def notification_endpoint_secrets_reencrypt(*, batch_size: int = 500) -> int:
    """Re-encrypt every endpoint secret under the current SECRET_KEY (after moving the old one to
    SECRET_KEY_FALLBACKS). Safe to run twice. Returns the number of secrets rewritten."""
    rewritten = 0
    last_id: uuid.UUID | None = None
    while True:
        with transaction.atomic():
            page = NotificationEndpoint.objects.order_by("id").select_for_update()
            if last_id is not None:
                page = page.filter(id__gt=last_id)
            endpoints = list(page[:batch_size])
            if not endpoints:
                return rewritten
            for endpoint in endpoints:
                endpoint.secret_encrypted = crypto.secret_reencrypt(endpoint.secret_encrypted)
            NotificationEndpoint.objects.bulk_update(endpoints, ["secret_encrypted"])
            rewritten += len(endpoints)
            last_id = endpoints[-1].id


# --- Publishing into the outbox -------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """What the publisher says happened; ``payload`` becomes the webhook body's ``data``."""

    account_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]


def notification_publish(
    *, account_id: uuid.UUID, event_type: str, payload: dict[str, Any]
) -> NotificationEvent | None:
    """Record one event and its deliveries in the caller's transaction; deliver after it commits.

    Returns ``None`` (and writes nothing) when no active endpoint of the account subscribes to
    ``event_type``.
    """
    events = notification_publish_many(
        notifications=[Notification(account_id=account_id, event_type=event_type, payload=payload)]
    )
    return events[0] if events else None


@transaction.atomic
def notification_publish_many(*, notifications: Sequence[Notification]) -> list[NotificationEvent]:
    """The set-based ``notification_publish`` for batches (a flush of many meters): three
    statements for the whole batch (endpoints, events, deliveries) whatever its size."""
    encoded_payloads: list[str] = []
    for notification in notifications:
        if notification.event_type not in EventType.values:
            raise UnknownEventType(f"Unknown notification event type {notification.event_type!r}.")
        if not isinstance(notification.payload, dict):
            raise ValidationFailed.for_field("payload", "The payload must be a JSON object.")
        # Fail here, in the caller's transaction, rather than at send time.
        encoded_payloads.append(json.dumps(notification.payload, cls=DjangoJSONEncoder))
    if not notifications:
        return []
    subscribers: dict[uuid.UUID, list[NotificationEndpoint]] = {}
    for endpoint in NotificationEndpoint.objects.filter(
        account_id__in={notification.account_id for notification in notifications},
        is_active=True,
    ).only("id", "account_id", "event_types", "is_active"):
        subscribers.setdefault(endpoint.account_id, []).append(endpoint)

    now = timezone.now()
    max_attempts = settings.WEBHOOK_MAX_ATTEMPTS
    events: list[NotificationEvent] = []
    event_payloads: list[str] = []
    # (id, account_id, event_id, endpoint_id): plain rows, no model instances (20,000 of them cost ~0.6 s).
    delivery_rows: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]] = []
    for notification, encoded in zip(notifications, encoded_payloads, strict=True):
        endpoints = [
            e for e in subscribers.get(notification.account_id, []) if e.receives(notification.event_type)
        ]
        if not endpoints:
            continue
        event = NotificationEvent(
            id=uuid.uuid4(),
            account_id=notification.account_id,
            event_type=notification.event_type,
            payload=notification.payload,
            created_at=now,
        )
        events.append(event)
        event_payloads.append(encoded)
        delivery_rows.extend(
            (uuid.uuid4(), notification.account_id, event.id, endpoint.id) for endpoint in endpoints
        )
    if not events:
        return []
    if connection.vendor == "postgresql":
        _insert_with_unnest(events, event_payloads, delivery_rows, max_attempts, now)
    else:
        NotificationEvent.objects.bulk_create(events)
        Delivery.objects.bulk_create(
            Delivery(
                id=delivery_id,
                account_id=account_id,
                event_id=event_id,
                endpoint_id=endpoint_id,
                max_attempts=max_attempts,
                next_attempt_at=now,
            )
            for delivery_id, account_id, event_id, endpoint_id in delivery_rows
        )
    # robust: a broker outage must not turn the caller's committed work into an error; the
    # deliveries are already due, so the retry sweep sends them when the enqueue is lost.
    transaction.on_commit(partial(_enqueue_deliveries, [row[0] for row in delivery_rows]), robust=True)
    return events


# The event type of a test event: sent to one endpoint on an operator's request, whatever that
# endpoint subscribes to; not a type an endpoint can subscribe to (so not in ``EventType``).
TEST_EVENT_TYPE = "endpoint.test"


@transaction.atomic
def notification_endpoint_test_send(*, endpoint: NotificationEndpoint) -> Delivery:
    """Send ``endpoint`` a test event, signed and delivered like every other (one attempt, after
    commit): its delivery shows what the endpoint answered, so a receiver can be tried before real
    events flow. A disabled endpoint is refused."""
    if not endpoint.is_active:
        raise ValidationFailed.for_field(
            "isActive", "The endpoint is disabled: enable it to send it a test event."
        )
    event = NotificationEvent.objects.create(
        account_id=endpoint.account_id,
        event_type=TEST_EVENT_TYPE,
        payload={"endpointId": str(endpoint.pk), "message": "A test event sent from the console."},
    )
    delivery = Delivery.objects.create(
        account_id=endpoint.account_id,
        event=event,
        endpoint=endpoint,
        max_attempts=1,
        next_attempt_at=timezone.now(),
    )
    transaction.on_commit(partial(_enqueue_deliveries, [delivery.pk]), robust=True)
    return delivery


def _insert_with_unnest(
    events: list[NotificationEvent],
    event_payloads: list[str],
    delivery_rows: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]],
    max_attempts: int,
    now: datetime,
) -> None:
    """PostgreSQL: one INSERT … SELECT FROM unnest(arrays) per table, whatever the batch size
    (bulk_create compiles every row in Python: ~6x slower for a 10,000-meter flush)."""
    event_table = NotificationEvent._meta.db_table
    delivery_table = Delivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {event_table} (id, account_id, event_type, payload, created_at) "  # noqa: S608
            "SELECT id, account_id, event_type, payload::jsonb, %s "
            "FROM unnest(%s::uuid[], %s::uuid[], %s::varchar[], %s::text[]) AS e(id, account_id, event_type, payload)",
            [
                now,
                [e.id for e in events],
                [e.account_id for e in events],
                [e.event_type for e in events],
                event_payloads,
            ],
        )
        cursor.execute(
            f"INSERT INTO {delivery_table} (id, account_id, event_id, endpoint_id, status, attempt_count, "  # noqa: S608
            "max_attempts, next_attempt_at, last_status_code, last_error, created_at, updated_at) "
            "SELECT id, account_id, event_id, endpoint_id, %s, 0, %s, %s, NULL, '', %s, %s "
            "FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::uuid[]) AS d(id, account_id, event_id, endpoint_id)",
            [
                Delivery.Status.PENDING,
                max_attempts,
                now,
                now,
                now,
                *map(list, zip(*delivery_rows, strict=True)),
            ],
        )
    for event in events:
        event._state.adding = False
        event._state.db = connection.alias


def _enqueue_deliveries(delivery_ids: list[uuid.UUID]) -> None:
    from notifications.tasks import deliver

    for delivery_id in delivery_ids:
        deliver.delay(str(delivery_id))


# --- The webhook request --------------------------------------------------------------------


def webhook_body(event: NotificationEvent) -> bytes:
    """The Standard Webhooks payload ``{"type", "timestamp", "data"}``, compact and key-sorted so
    every attempt sends the same bytes."""
    document = {
        "type": event.event_type,
        "timestamp": format_timestamp(event.created_at),
        "data": event.payload,
    }
    return json.dumps(document, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True).encode()


def webhook_signature(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the secret's decoded bytes."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(crypto.secret_key_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_headers(*, secret: str, event: NotificationEvent, timestamp: int, body: bytes) -> dict[str, str]:
    webhook_id = str(event.id)
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_signature(
            secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=body
        ),
    }


def backoff_delay_seconds(*, attempt_number: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(max, base · 2^(n-1))) after attempt n;
    a receiver's Retry-After is honoured as a floor (capped at the maximum)."""
    ceiling = min(
        settings.WEBHOOK_BACKOFF_MAX_SECONDS,
        settings.WEBHOOK_BACKOFF_BASE_SECONDS * 2 ** (attempt_number - 1),
    )
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.WEBHOOK_BACKOFF_MAX_SECONDS))
    return delay


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


# --- Claiming and attempting deliveries -----------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    delivery: Delivery
    number: int
    attempted_at: datetime


def _lease_seconds() -> float:
    return settings.WEBHOOK_TIMEOUT_SECONDS + CLAIM_LEASE_MARGIN_SECONDS


def _fail_without_attempt(delivery: Delivery, message: str, now: datetime) -> None:
    Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(
        status=Delivery.Status.FAILED, next_attempt_at=None, last_error=message, updated_at=now
    )


def _claim_next(due: QuerySet, *, due_by: datetime | None = None) -> _Claim | None:
    """Take the next delivery of ``due`` that was due by ``due_by`` (default: now) for one attempt,
    or ``None`` if there is none.

    Deliveries that cannot be attempted (endpoint disabled, or every attempt used up by workers
    that died) are marked FAILED on the way and the search goes on.
    """
    now = timezone.now()
    with transaction.atomic():
        # The row alone (no joins) so the partial index notif_delivery_due answers in index order.
        candidates = due.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=due_by or now).order_by(
            "next_attempt_at", "id"
        )
        if connection.features.has_select_for_update_skip_locked:
            # Two workers never wait for or take the same row; SQLite (no row locks) serialises
            # write transactions instead, and the compare-and-set below decides.
            candidates = candidates.select_for_update(skip_locked=True)
        for _ in range(MAX_SKIPPED_PER_CLAIM):
            locked = candidates.first()
            if locked is None:
                return None
            delivery = Delivery.objects.select_related("event", "endpoint").get(pk=locked.pk)
            if not delivery.endpoint.is_active:
                _fail_without_attempt(delivery, "The endpoint is disabled.", now)
                continue
            if delivery.attempt_count >= delivery.max_attempts:
                _fail_without_attempt(delivery, DeliveryAttempt.LAST_INTERRUPTED, now)
                continue
            number = delivery.attempt_count + 1
            claimed = Delivery.objects.filter(
                pk=delivery.pk,
                status=Delivery.Status.PENDING,
                attempt_count=delivery.attempt_count,
            ).update(
                attempt_count=number,
                next_attempt_at=now + timedelta(seconds=_lease_seconds()),
                updated_at=now,
            )
            if claimed != 1:
                return None
            DeliveryAttempt.objects.create(
                delivery=delivery, number=number, attempted_at=now, error=DeliveryAttempt.NO_OUTCOME
            )
            delivery.attempt_count = number
            return _Claim(delivery=delivery, number=number, attempted_at=now)
    return None


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str
    duration_ms: int
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def endpoint_gone(self) -> bool:
        # Standard Webhooks: 410 Gone means the receiver wants no more webhooks from us.
        return self.status_code == 410


def _send(claim: _Claim) -> _Outcome:
    """The HTTP request of one attempt, outside any transaction."""
    delivery = claim.delivery
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        secret = notification_endpoint_secret(endpoint=delivery.endpoint)
    except crypto.SecretUnreadable as exc:
        return _Outcome(status_code=None, error=str(exc), duration_ms=elapsed())
    body = webhook_body(delivery.event)
    timestamp = int(claim.attempted_at.timestamp())
    headers = webhook_headers(secret=secret, event=delivery.event, timestamp=timestamp, body=body)
    try:
        response = outbound.send(
            "POST",
            delivery.endpoint.url,
            body=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
        )
    except TargetNotAllowed as exc:
        return _Outcome(status_code=None, error=f"Target not allowed: {exc.message}", duration_ms=elapsed())
    except outbound.OutboundRequestFailed as exc:
        return _Outcome(status_code=None, error=str(exc), duration_ms=elapsed())
    if 200 <= response.status < 300:
        error = ""
    elif 300 <= response.status < 400:
        error = (
            f"HTTP {response.status}: redirects are not followed "
            f"(Location: {response.headers.get('location', '')[:300]}); update the endpoint URL."
        )
    else:
        error = f"HTTP {response.status}"
    return _Outcome(
        status_code=response.status,
        error=error,
        duration_ms=response.duration_ms,
        retry_after=_retry_after_seconds(response.headers.get("retry-after")),
    )


def _complete(claim: _Claim, outcome: _Outcome) -> Delivery | None:
    now = timezone.now()
    delivery = claim.delivery
    update: dict[str, Any] = {
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "updated_at": now,
    }
    if outcome.succeeded:
        update.update(status=Delivery.Status.SUCCEEDED, next_attempt_at=None)
    elif outcome.endpoint_gone or claim.number >= delivery.max_attempts:
        update.update(status=Delivery.Status.FAILED, next_attempt_at=None)
    else:
        delay = backoff_delay_seconds(attempt_number=claim.number, retry_after=outcome.retry_after)
        update.update(next_attempt_at=now + timedelta(seconds=delay))
    with transaction.atomic():
        DeliveryAttempt.objects.filter(delivery_id=delivery.pk, number=claim.number).update(
            status_code=outcome.status_code, error=outcome.error, duration_ms=outcome.duration_ms
        )
        # Compare-and-set: only the holder of this attempt number moves the delivery on.
        Delivery.objects.filter(
            pk=delivery.pk, status=Delivery.Status.PENDING, attempt_count=claim.number
        ).update(**update)
        if outcome.endpoint_gone:
            NotificationEndpoint.objects.filter(pk=delivery.endpoint_id).update(
                is_active=False, updated_at=now
            )
            logger.info("notification endpoint %s answered 410 Gone: disabled", delivery.endpoint_id)
    # None when the endpoint (and so the delivery) was deleted while the request was in flight.
    return Delivery.objects.filter(pk=delivery.pk).first()


def delivery_attempt(*, delivery_id: uuid.UUID | str) -> Delivery | None:
    """Attempt one delivery if it is due and nobody else holds it; ``None`` if there was nothing to do.

    Idempotent: run twice (or by two workers at once), a due attempt is sent once; a delivery
    that is not due, in flight elsewhere, succeeded or failed is left alone.
    """
    try:
        delivery_id = uuid.UUID(str(delivery_id))
    except ValueError:
        return None
    claim = _claim_next(Delivery.objects.filter(pk=delivery_id))
    if claim is None:
        return None
    return _complete(claim, _send(claim))


def delivery_sweep_due(*, limit: int | None = None, time_budget_seconds: float | None = None) -> int:
    """Attempt due PENDING deliveries (retries, and first attempts whose enqueue was lost), oldest
    first, one claim at a time, until ``limit`` attempts or the time budget is spent. Only what
    was due when the sweep started is taken, so one sweep never retries a delivery it just
    failed. Concurrent sweeps take disjoint deliveries. Returns the number of attempts made."""
    limit = settings.WEBHOOK_SWEEP_BATCH_SIZE if limit is None else limit
    budget = (
        settings.WEBHOOK_SWEEP_TIME_BUDGET_SECONDS if time_budget_seconds is None else time_budget_seconds
    )
    started = time.monotonic()
    due_by = timezone.now()
    attempted = 0
    while attempted < limit and time.monotonic() - started < budget:
        claim = _claim_next(Delivery.objects.all(), due_by=due_by)
        if claim is None:
            break
        _complete(claim, _send(claim))
        attempted += 1
    return attempted


@transaction.atomic
def delivery_retry(*, delivery: Delivery) -> Delivery:
    """Give a FAILED delivery a fresh series of attempts, the first one now."""
    if delivery.status != Delivery.Status.FAILED:
        raise ValidationFailed.for_field(
            "status", "Only a FAILED delivery can be retried.", code="DELIVERY_NOT_FAILED"
        )
    now = timezone.now()
    updated = Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.FAILED).update(
        status=Delivery.Status.PENDING,
        next_attempt_at=now,
        max_attempts=delivery.attempt_count + settings.WEBHOOK_MAX_ATTEMPTS,
        updated_at=now,
    )
    if updated:
        transaction.on_commit(partial(_enqueue_deliveries, [delivery.pk]), robust=True)
    delivery.refresh_from_db()
    return delivery
