"""Operators' view of online collection: collectors with their traffic, and the batch log (read-only)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join

from accounts.admin_scoping import (
    AccountScopedAdmin,
    ReadOnlyAccountScopedAdmin,
    instant_text,
    user_account_id,
)
from collection import selectors, services
from collection.models import CollectedBatch, Collector, ConsumerOffset
from config.api.errors import ApiError

PAYLOAD_PREVIEW_CHARS = 300


class CollectorFilter(admin.SimpleListFilter):
    """Filter by collector, listing only the collectors of the user's account."""

    title = "collector"
    parameter_name = "collector"

    def lookups(self, request, model_admin):
        collectors = Collector.objects.order_by("name")
        account_id = user_account_id(request)
        if account_id is not None:
            collectors = collectors.filter(account_id=account_id)
        return [(str(collector.pk), collector.name) for collector in collectors[:200]]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(collector_id=self.value())
        return queryset


class CollectorForm(forms.ModelForm):
    """Runs the service's checks (name format, free name, per-account limit) as form errors."""

    default_account_id = None

    class Meta:
        model = Collector
        fields = ["account", "name"]

    def clean(self):
        cleaned = super().clean()
        account = cleaned.get("account")
        account_id = account.pk if account else (self.instance.account_id or self.default_account_id)
        if cleaned.get("name") and account_id:
            try:
                services.collector_validate(
                    account_id=account_id,
                    name=cleaned["name"],
                    collector=None if self.instance._state.adding else self.instance,
                )
            except ApiError as exc:
                raise forms.ValidationError(exc.message, code=exc.code)
        return cleaned


@admin.register(Collector)
class CollectorAdmin(AccountScopedAdmin):
    form = CollectorForm
    list_display = [
        "name",
        "account",
        "status",
        "batches_received",
        "bytes_received",
        "last_batch_at",
        "created_at",
    ]
    list_filter = ["status", "account"]
    search_fields = ["name", "=id"]
    ordering = ["name"]
    actions = ["provision", "delete_collectors"]
    readonly_fields = [
        "id",
        "status",
        "batches_received",
        "bytes_received",
        "last_batch",
        "created_at",
        "updated_at",
        "consumers",
        "recent_payloads",
    ]

    def get_queryset(self, request):
        return selectors.collectors_with_statistics(super().get_queryset(request))

    def get_fields(self, request, obj=None):
        fields = ["name"]
        if request.user.is_superuser and obj is None:
            fields.insert(0, "account")
        if obj is not None:
            fields = (
                ["account", *fields, *self.readonly_fields]
                if request.user.is_superuser
                else [*fields, *self.readonly_fields]
            )
        return fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["account", *self.readonly_fields] if request.user.is_superuser else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        # Deleting goes through the "Delete" action: it stops data at once and purges the log in a
        # task, instead of Django collecting every batch for a confirmation page.
        return False

    @admin.display(description="batches received")
    def batches_received(self, obj):
        return obj.pruned_batches + (getattr(obj, "retained_batches", None) or 0)

    @admin.display(description="bytes received")
    def bytes_received(self, obj):
        return filesizeformat(obj.pruned_bytes + (getattr(obj, "retained_bytes", None) or 0))

    @admin.display(description="last batch")
    def last_batch_at(self, obj):
        # The instant itself: the list formats it (and keeps the column from wrapping).
        return getattr(obj, "last_batch_at", None) or "—"

    @admin.display(description="last batch")
    def last_batch(self, obj):
        # A read-only field is shown as text: formatted here, as the list shows it.
        return instant_text(getattr(obj, "last_batch_at", None))

    def consumer_label(self, consumer: str, account_id) -> str:
        """A consumer as the collector's page names it: the name it registered with (the streams app,
        which knows its ``stream:<id>`` names, shows the stream's name instead)."""
        return consumer

    @admin.display(description="consumers")
    def consumers(self, obj):
        offsets = list(ConsumerOffset.objects.filter(collector=obj).order_by("consumer"))
        if not offsets:
            return "No registered consumers."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    self.consumer_label(offset.consumer, obj.account_id),
                    offset.last_sequence,
                    selectors.consumer_lag(
                        account_id=obj.account_id, collector_id=obj.pk, consumer=offset.consumer
                    ),
                    instant_text(offset.updated_at),
                )
                for offset in offsets
            ),
        )
        return format_html(
            "<table><thead><tr><th>consumer</th><th>last sequence</th><th>unconsumed</th><th>updated</th>"
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="recent payloads")
    def recent_payloads(self, obj):
        batches = selectors.collector_recent_batches(collector_id=obj.pk, count=10)
        if not batches:
            return "No batches received yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            (
                (
                    batch.sequence,
                    instant_text(batch.received_at),
                    batch.ingestion_id,
                    filesizeformat(batch.size_bytes),
                    _preview(batch.payload),
                )
                for batch in batches
            ),
        )
        return format_html(
            "<table><thead><tr><th>sequence</th><th>received</th><th>ingestion id</th><th>size</th>"
            "<th>payload</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        account = self.account_for_request(request, obj)
        return type("AccountCollectorForm", (form,), {"default_account_id": account.pk if account else None})

    def save_model(self, request, obj, form, change):
        if change:
            saved = services.collector_update(
                collector=Collector.objects.get(pk=obj.pk), name=form.cleaned_data["name"]
            )
        else:
            account = form.cleaned_data.get("account") or self.account_for_request(request)
            saved = services.collector_create(account_id=account.pk, name=form.cleaned_data["name"])
        obj.pk = saved.pk

    @admin.action(description="Provision now (CREATING → ACTIVE)")
    def provision(self, request, queryset):
        done = sum(services.collector_provision(collector_id=collector.pk) for collector in queryset)
        messages.success(request, f"Provisioned {done} collector(s).")

    @admin.action(description="Delete (stop accepting data, purge stored batches)")
    def delete_collectors(self, request, queryset):
        done = sum(services.collector_delete(collector=collector) for collector in queryset)
        messages.success(
            request, f"Deleting {done} collector(s); their batches are purged in the background."
        )


def _preview(payload: str) -> str:
    return payload if len(payload) <= PAYLOAD_PREVIEW_CHARS else payload[:PAYLOAD_PREVIEW_CHARS] + "…"


@admin.register(CollectedBatch)
class CollectedBatchAdmin(ReadOnlyAccountScopedAdmin):
    list_display = ["sequence", "ingestion_id", "collector", "size_bytes", "idempotency_key", "received_at"]
    list_filter = [CollectorFilter, "received_at"]
    search_fields = ["=ingestion_id", "=idempotency_key"]
    ordering = ["-sequence"]
    list_select_related = ["collector"]
    show_full_result_count = False
    fields = [
        "sequence",
        "ingestion_id",
        "collector",
        "size_bytes",
        "idempotency_key",
        "received_at",
        "payload",
    ]
    readonly_fields = fields


@admin.register(ConsumerOffset)
class ConsumerOffsetAdmin(ReadOnlyAccountScopedAdmin):
    account_field = "collector__account"
    list_display = ["consumer", "collector", "last_sequence", "updated_at"]
    list_filter = [CollectorFilter]
    search_fields = ["consumer"]
    ordering = ["collector", "consumer"]
    list_select_related = ["collector"]
