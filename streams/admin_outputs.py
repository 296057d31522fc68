"""The outputs' outbox in the admin (imported by ``streams/admin.py``): what output nodes send,
with the action **Retry now**; read-only otherwise, each admin user seeing only their account's."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from accounts.admin_scoping import ReadOnlyAccountScopedAdmin
from streams.engine import deliveries
from streams.models import OutputDelivery

BODY_SHOWN_CHARACTERS = 20_000


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
        return obj.last_error if len(obj.last_error) <= 120 else obj.last_error[:119] + "…"

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
