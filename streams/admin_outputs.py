"""The outputs' outbox in the admin (imported by ``streams/admin.py``): what output nodes send,
with the action **Retry now**; read-only otherwise, each admin user seeing only their account's.
And how a stream's health is shown on the stream list and the stream page."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from accounts.admin_scoping import ReadOnlyAccountScopedAdmin
from streams.engine import deliveries
from streams.engine.selectors import StreamHealth
from streams.models import OutputDelivery, Stream

BODY_SHOWN_CHARACTERS = 20_000
ERROR_LINES_SHOWN = 10
HEALTH_COLORS = {
    "healthy": "#2e7d32",
    "lagging": "#b26a00",
    "output failing": "#c62828",
    "failing": "#c62828",
}


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"


def health_badge(health: StreamHealth) -> str:
    """The stream list's cell: the state, then lag and failures when there are any."""
    details = []
    if health.lag_batches:
        details.append(
            f"lag {health.lag_batches} batch{'es' if health.lag_batches != 1 else ''} / {_seconds(health.lag_seconds)}"
        )
    if health.consecutive_failures:
        details.append(
            f"{health.consecutive_failures} failed run{'s' if health.consecutive_failures != 1 else ''}"
        )
    if health.outbox_pending:
        details.append(f"{health.outbox_pending} waiting to send")
    return format_html(
        '<span class="stream-health" data-state="{}" style="color: {}; font-weight: bold;">{}</span>{}',
        health.state,
        HEALTH_COLORS[health.state],
        health.state,
        format_html("<br><small>{}</small>", ", ".join(details)) if details else "",
    )


def health_block(health: StreamHealth, stream: Stream) -> str:
    """The stream page's section: state, lag, failures, outbox, and the errors collapsed."""
    errors = format_html_join(
        "",
        '<tr class="stream-health-error"><td>{}</td><td class="stream-health-count">×{}</td><td>{}</td><td>{}</td></tr>',
        (
            (
                "run" if line.source == "run" else f"output {line.source}",
                line.count,
                line.last_at.strftime("%Y-%m-%d %H:%M:%S") if line.last_at else "",
                line.message,
            )
            for line in health.errors[:ERROR_LINES_SHOWN]
        ),
    )
    outbox_link = reverse("admin:streams_outputdelivery_changelist") + f"?stream__id__exact={stream.pk}"
    return format_html(
        "<p>{}</p><ul>"
        "<li>lag: {} collected batch(es) not consumed yet, the oldest {} old</li>"
        "<li>consecutive failed runs: {}</li>"
        '<li>output deliveries: {} waiting (the oldest {} old), {} dead letter(s) — <a href="{}">see them</a></li>'
        "</ul>{}",
        health_badge(health),
        health.lag_batches,
        _seconds(health.lag_seconds),
        health.consecutive_failures,
        health.outbox_pending,
        _seconds(health.outbox_oldest_pending_seconds),
        health.outbox_dead,
        outbox_link,
        format_html(
            "<table><thead><tr><th>where</th><th>times</th><th>last (UTC)</th><th>error</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            errors,
        )
        if health.errors
        else "",
    )


@admin.register(OutputDelivery)
class OutputDeliveryAdmin(ReadOnlyAccountScopedAdmin):
    """Deliveries of output nodes: PENDING (waiting, or retrying after failed attempts), DELIVERED
    (body emptied, purged after the retention) or DEAD (the dead letter, after the last attempt)."""

    list_display = [
        "id",
        "stream",
        "node_id",
        "status",
        "record_count",
        "created_at",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error_summary",
    ]
    list_filter = ["status", ("stream", admin.RelatedOnlyFieldListFilter), "node_id"]
    search_fields = ["=delivery_id"]
    ordering = ["-id"]
    list_select_related = ["stream"]
    fields = [
        "delivery_id",
        "stream",
        "node_id",
        "run",
        "status",
        "record_count",
        "created_at",
        "attempts",
        "max_attempts",
        "last_attempt_at",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "body_block",
    ]
    readonly_fields = fields
    actions = ["retry_now"]

    @admin.display(description="last error")
    def last_error_summary(self, obj: OutputDelivery) -> str:
        return Truncator(obj.last_error).chars(120)

    @admin.display(description="records")
    def body_block(self, obj: OutputDelivery) -> str:
        if not obj.body:
            return "(sent; the body is not kept)" if obj.status == OutputDelivery.Status.DELIVERED else ""
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        if len(text) > BODY_SHOWN_CHARACTERS:
            text = text[:BODY_SHOWN_CHARACTERS] + "\n…"
        return format_html('<pre style="white-space: pre-wrap; max-width: 60em;">{}</pre>', text)

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("streams.change_outputdelivery")

    @admin.action(
        description="Retry now (dead letters get a fresh series of attempts)", permissions=["retry"]
    )
    def retry_now(self, request, queryset):
        count = deliveries.output_deliveries_retry_now(delivery_ids=queryset.values_list("pk", flat=True))
        messages.success(request, f"{count} delivery(ies) will be sent again now.")
