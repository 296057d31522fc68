"""Data correction in the operator UI: refused usage records triaged (counts by reason, source,
meter type and customer; search inside the records), fixed by hand and reprocessed or discarded
through the correction services."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.text import Truncator

from accounts.admin_scoping import AccountScopedAdmin
from config.api.errors import ApiError
from metering import corrections
from metering.models import DataCorrection


class PrettyJSONField(forms.JSONField):
    """A JSON text area indented for editing by hand."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class DataCorrectionForm(forms.ModelForm):
    record = PrettyJSONField(
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "spellcheck": "false"}),
        help_text="The record as it came in; fix it, then Save and reprocess.",
    )

    class Meta:
        model = DataCorrection
        fields = ["record"]

    def clean_record(self):
        record = self.cleaned_data["record"]
        if not isinstance(record, dict):
            raise forms.ValidationError("The record must be a JSON object.")
        return record


@admin.register(DataCorrection)
class DataCorrectionAdmin(AccountScopedAdmin):
    """Refused usage: fix the record, then reprocess (or discard) it with the actions."""

    form = DataCorrectionForm
    change_form_template = "admin/metering/datacorrection/change_form.html"
    list_display = [
        "created_at",
        "reason",
        "status",
        "source",
        "node",
        "record_preview",
        "attempts",
        "updated_at",
    ]
    list_filter = ["reason", "status", "source", "account"]
    search_fields = ["=idempotency_key", "=source_ref", "message"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    actions = ["reprocess", "discard"]
    shown = [
        "reason",
        "message",
        "status",
        "source",
        "source_ref",
        "node",
        "idempotency_key",
        "attempts",
        "created_at",
        "updated_at",
        "resolved_at",
    ]

    def get_fields(self, request, obj=None):
        return ["record", *self.shown]

    def get_readonly_fields(self, request, obj=None):
        # Only an OPEN correction's record can be edited.
        if obj is not None and obj.status != DataCorrection.Status.OPEN:
            return ["record", *self.shown]
        return self.shown

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="record")
    def record_preview(self, correction):
        return Truncator(json.dumps(correction.record, sort_keys=True)).chars(80)

    def save_model(self, request, obj, form, change):
        try:
            corrections.data_correction_update(correction=obj, record=form.cleaned_data["record"])
        except ApiError as error:
            messages.error(request, error.message)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_reprocess"] = bool(
            obj is not None
            and obj.status == DataCorrection.Status.OPEN
            and self.has_change_permission(request, obj)
        )
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    def response_change(self, request, obj):
        """ "Save and reprocess": the edited record goes through the ledger again at once; the page
        stays open on the correction to show what happened to it."""
        if "_reprocess" not in request.POST:
            return super().response_change(request, obj)
        try:
            correction = corrections.data_correction_reprocess(correction=obj)
        except ApiError as error:
            messages.error(request, error.message)
        else:
            if correction.status == DataCorrection.Status.REPROCESSED:
                messages.success(request, f"Reprocessed: {correction.message}")
            elif correction.status == DataCorrection.Status.DISCARDED:
                messages.warning(request, f"Discarded: {correction.message}")
            else:
                messages.error(
                    request, f"Still refused ({correction.get_reason_display()}): {correction.message}"
                )
        return HttpResponseRedirect(reverse("admin:metering_datacorrection_change", args=[obj.pk]))

    @admin.action(description="Reprocess selected corrections")
    def reprocess(self, request, queryset):
        by_account: dict = {}
        for correction in queryset:
            by_account.setdefault(correction.account_id, []).append(correction.pk)
        reprocessed = still_open = discarded = 0
        for account_id, ids in by_account.items():
            result = corrections.data_corrections_reprocess(account_id=account_id, correction_ids=ids)
            reprocessed += result.reprocessed
            still_open += result.still_open
            discarded += result.discarded
        messages.success(
            request, f"{reprocessed} reprocessed, {still_open} still open, {discarded} discarded."
        )

    @admin.action(description="Discard selected corrections")
    def discard(self, request, queryset):
        by_account: dict = {}
        for correction in queryset:
            by_account.setdefault(correction.account_id, []).append(correction.pk)
        discarded = sum(
            corrections.data_corrections_discard(account_id=account_id, correction_ids=ids)
            for account_id, ids in by_account.items()
        )
        messages.success(request, f"{discarded} discarded.")
