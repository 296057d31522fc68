"""Data correction in the operator UI: refused usage records triaged (counts by reason, source,
meter type and customer; search inside the records), fixed by hand and reprocessed or discarded
through the correction services."""

from __future__ import annotations

import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.db.models.fields.json import KT
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.text import Truncator

from accounts.admin_scoping import AccountScopedAdmin
from config.api.errors import ApiError
from metering import corrections
from metering.models import DataCorrection, MeterType

# How to fix each reason, and whether a reprocess alone can (once the cause outside the record is
# gone) or the record itself must change first.
R = DataCorrection.Reason
FIX_HINTS = {
    R.MISSING_USER_ID: ("Add the customer's userId to the record, then Save and reprocess.", False),
    R.INVALID_USER_ID: ("Shorten the userId to 320 characters at most, then Save and reprocess.", False),
    R.MISSING_VALUE: (
        "Add a numeric value (SUM, MAX and MIN types need one), then Save and reprocess.",
        False,
    ),
    R.NON_NUMERIC_VALUE: ("Make the value a finite number, then Save and reprocess.", False),
    R.VALUE_OUT_OF_RANGE: ("Bring the value within the ledger's range, then Save and reprocess.", False),
    R.INVALID_TIMESTAMP: (
        "Write the timestamp as ISO 8601 (2026-12-07T11:36:37Z), then Save and reprocess.",
        False,
    ),
    R.FUTURE_TIMESTAMP: ("Reprocess once its time has come, or correct the timestamp.", True),
    R.TIMESTAMP_TOO_OLD: ("Older than the idempotency window: it cannot be counted; discard it.", False),
    R.OUTSIDE_ACTIVE_WINDOW: (
        "Move the meter type's active window to cover it (or fix the timestamp), then reprocess.",
        True,
    ),
    R.NO_MATCHING_METER: (
        "Create the customer's meter for this meter type (Meters → Add), then reprocess.",
        True,
    ),
    R.AMBIGUOUS_METER: (
        "Add the meterKey that picks one meter to the record, then Save and reprocess.",
        False,
    ),
    R.ARCHIVED_METER_TYPE: ("Reactivate the meter type (Meter types → action), then reprocess.", True),
    R.INVALID_DIMENSIONS: (
        "Make dimensions a JSON object of names to values, then Save and reprocess.",
        False,
    ),
    R.INVALID_RECORD: ("Rewrite the record as a JSON object, then Save and reprocess.", False),
}


def fix_hint(reason: str) -> str:
    text, reprocess_alone = FIX_HINTS.get(reason, ("Fix the record, then Save and reprocess.", False))
    return f"{text} ({'a reprocess alone fixes it once that is done' if reprocess_alone else 'a reprocess alone cannot fix it: the record must change'})"


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


class CustomerFilter(admin.SimpleListFilter):
    """The records' customers (``userId``), most refused first, with their counts (the admin's
    facets); "no customer" for records that came without one."""

    title = "customer"
    parameter_name = "customer"
    shown = 20
    NONE = "-"

    def lookups(self, request, model_admin):
        counted = (
            model_admin.get_queryset(request)
            .annotate(customer=KT("record__userId"))
            .values("customer")
            .annotate(records=Count("id"))
            .order_by("-records", "customer")[: self.shown]
        )
        return [(row["customer"] or self.NONE, row["customer"] or "no customer") for row in counted]

    def queryset(self, request, queryset):
        if self.value() == self.NONE:
            return queryset.filter(Q(record__userId__isnull=True) | Q(record__userId=""))
        if self.value():
            return queryset.filter(record__userId=self.value())
        return queryset


class MeterTypeFilter(admin.SimpleListFilter):
    """The meter type a record names (``meterTypeId`` or ``meterApiName``), by its name."""

    title = "meter type"
    parameter_name = "meter_type"

    def lookups(self, request, model_admin):
        account_ids = model_admin.get_queryset(request).values("account_id")
        types = MeterType.objects.filter(account_id__in=account_ids).order_by("name")
        return [(str(meter_type.pk), meter_type.name) for meter_type in types]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        meter_type = MeterType.objects.filter(
            pk=self.value(), account_id__in=queryset.values("account_id")
        ).first()
        if meter_type is None:
            return queryset.none()
        named = Q(record__meterTypeId=str(meter_type.pk))
        return queryset.filter(
            named | Q(record__meterApiName=meter_type.api_name) if meter_type.api_name else named
        )


def _uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def meter_type_names(corrections: list[DataCorrection]) -> dict:
    """The name of the meter type each correction's record names (by ``meterTypeId`` or
    ``meterApiName``), by correction id; a record naming none (or an unknown one) is left out."""
    records = {c.pk: c.record if isinstance(c.record, dict) else {} for c in corrections}
    ids = {_uuid(record.get("meterTypeId")) for record in records.values()} - {None}
    api_names = {record.get("meterApiName") for record in records.values()} - {None}
    types = MeterType.objects.filter(
        Q(pk__in=ids) | Q(api_name__in=api_names), account_id__in={c.account_id for c in corrections}
    )
    by_id = {(t.account_id, t.pk): t.name for t in types}
    by_api_name = {(t.account_id, t.api_name): t.name for t in types}
    names = {}
    for correction in corrections:
        record = records[correction.pk]
        name = by_id.get((correction.account_id, _uuid(record.get("meterTypeId")))) or by_api_name.get(
            (correction.account_id, record.get("meterApiName"))
        )
        if name:
            names[correction.pk] = name
    return names


@admin.register(DataCorrection)
class DataCorrectionAdmin(AccountScopedAdmin):
    """Refused usage: fix the record, then reprocess (or discard) it with the actions."""

    form = DataCorrectionForm
    change_form_template = "admin/metering/datacorrection/change_form.html"
    list_display = [
        "created_at",
        "reason",
        "meter_type",
        "status",
        "source",
        "node",
        "record_preview",
        "attempts",
        "updated_at",
    ]
    list_filter = ["reason", "status", "source", MeterTypeFilter, CustomerFilter, "account"]
    # Counts beside every filter choice (reason, status, source, meter type, customer): the triage
    # at a glance.
    show_facets = admin.ShowFacets.ALWAYS
    list_per_page = 25
    # "record" searches inside the record's fields (a customer's id, a meter's api name…).
    search_fields = ["=idempotency_key", "=source_ref", "message", "record"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    actions = ["reprocess", "discard"]
    shown = [
        "how_to_fix",
        "reason",
        "meter_type",
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

    def get_changelist_instance(self, request):
        # The meter types of the whole page in one query, not one per row.
        changelist = super().get_changelist_instance(request)
        names = meter_type_names(list(changelist.result_list))
        for correction in changelist.result_list:
            correction.meter_type_name = names.get(correction.pk)
        return changelist

    @admin.display(description="meter type")
    def meter_type(self, correction):
        if not hasattr(correction, "meter_type_name"):
            correction.meter_type_name = meter_type_names([correction]).get(correction.pk)
        return correction.meter_type_name or "–"

    @admin.display(description="how to fix")
    def how_to_fix(self, correction):
        return fix_hint(correction.reason)

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
