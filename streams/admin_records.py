"""The stream engine's records in the admin, read-only: aggregation stores and their sessions,
inspected records and flush deliveries (with the actions that hand them back to the engine)."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from accounts.admin_scoping import ReadOnlyAccountScopedAdmin
from streams.engine import services as engine_services
from streams.models import AggregationSession, AggregationStore, FlushDelivery, InspectRecord


def json_block(value) -> str:
    return render_to_string(
        "admin/streams/includes/json_block.html", {"text": json.dumps(value, indent=2, ensure_ascii=False)}
    )


@admin.register(AggregationStore)
class AggregationStoreAdmin(ReadOnlyAccountScopedAdmin):
    list_display = ["store_id", "kind", "key_fields_label", "stream", "node_id", "sessions_link"]
    list_filter = ["kind", "account"]
    search_fields = ["store_id", "stream__name", "node_id"]
    ordering = ["store_id"]
    list_select_related = ["stream"]
    fields = [
        "store_id",
        "kind",
        "key_fields_label",
        "stream",
        "node_id",
        "created_at",
        "updated_at",
        "sessions_link",
    ]
    readonly_fields = fields

    @admin.display(description="key fields (in order)")
    def key_fields_label(self, obj: AggregationStore) -> str:
        return ", ".join(obj.key_fields)

    @admin.display(description="sessions")
    def sessions_link(self, obj: AggregationStore) -> str:
        url = reverse("admin:streams_aggregationsession_changelist") + f"?store__id__exact={obj.pk}"
        return format_html('<a href="{}">{} session(s)</a>', url, obj.sessions.count())


@admin.register(AggregationSession)
class AggregationSessionAdmin(ReadOnlyAccountScopedAdmin):
    list_display = [
        "field_values_label",
        "store",
        "stream",
        "node_id",
        "record_count",
        "updated_at",
        "timeout_at",
    ]
    list_filter = [
        ("store", admin.RelatedOnlyFieldListFilter),
        ("stream", admin.RelatedOnlyFieldListFilter),
        "account",
    ]
    search_fields = ["key", "field_values", "node_id"]
    ordering = ["timeout_at"]
    list_select_related = ["store", "stream"]
    actions = ["time_out_now"]
    fields = [
        "store",
        "stream",
        "node_id",
        "field_values_label",
        "key",
        "data_block",
        "meta_block",
        "created_at",
        "updated_at",
        "timeout_at",
    ]
    readonly_fields = fields

    @admin.display(description="field values")
    def field_values_label(self, obj: AggregationSession) -> str:
        return " / ".join(json.dumps(value, ensure_ascii=False) for value in obj.field_values)

    @admin.display(description="records")
    def record_count(self, obj: AggregationSession) -> int:
        return obj.meta.get("recordCount", 0)

    @admin.display(description="data")
    def data_block(self, obj: AggregationSession) -> str:
        return json_block(obj.data)

    @admin.display(description="meta")
    def meta_block(self, obj: AggregationSession) -> str:
        return json_block(obj.meta)

    def has_expire_permission(self, request) -> bool:
        return request.user.has_perm("streams.change_aggregationsession")

    @admin.action(description="Time out now (the next sweep emits them downstream)", permissions=["expire"])
    def time_out_now(self, request, queryset):
        count = engine_services.aggregation_sessions_expire(session_ids=queryset.values_list("pk", flat=True))
        messages.success(request, f"{count} session(s) will be emitted by the next sweep (within 30 s).")


@admin.register(InspectRecord)
class InspectRecordAdmin(ReadOnlyAccountScopedAdmin):
    list_display = ["created_at", "stream", "node_id", "record_summary"]
    list_filter = [("stream", admin.RelatedOnlyFieldListFilter), "node_id", "account"]
    search_fields = ["node_id", "stream__name"]
    ordering = ["-id"]
    list_select_related = ["stream"]
    fields = ["stream", "node_id", "run", "created_at", "record_block"]
    readonly_fields = fields

    @admin.display(description="record")
    def record_summary(self, obj: InspectRecord) -> str:
        text = json.dumps(obj.record, ensure_ascii=False)
        return Truncator(text).chars(120)

    @admin.display(description="record")
    def record_block(self, obj: InspectRecord) -> str:
        return json_block(obj.record)


@admin.register(FlushDelivery)
class FlushDeliveryAdmin(ReadOnlyAccountScopedAdmin):
    """Flushed metered records waiting for a Meter processor's downstream nodes (the outbox);
    a delivered row is gone. A failing one shows its attempts, error and next attempt."""

    list_display = [
        "id",
        "stream",
        "node_id",
        "record_count",
        "created_at",
        "attempts",
        "next_attempt_at",
        "last_error_summary",
    ]
    list_filter = [("stream", admin.RelatedOnlyFieldListFilter), "node_id", "account"]
    ordering = ["id"]
    list_select_related = ["stream"]
    fields = [
        "stream",
        "node_id",
        "record_count",
        "created_at",
        "attempts",
        "next_attempt_at",
        "last_error",
        "records_block",
    ]
    readonly_fields = fields
    actions = ["retry_now"]

    @admin.display(description="last error")
    def last_error_summary(self, obj: FlushDelivery) -> str:
        return Truncator(obj.last_error).chars(120)

    @admin.display(description="records")
    def records_block(self, obj: FlushDelivery) -> str:
        return json_block(obj.records)

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("streams.change_flushdelivery")

    @admin.action(description="Retry now (the next sweep delivers them)", permissions=["retry"])
    def retry_now(self, request, queryset):
        count = engine_services.flush_deliveries_retry_now(delivery_ids=queryset.values_list("pk", flat=True))
        messages.success(request, f"{count} delivery(ies) will be retried by the next sweep (within 10 s).")
