"""Meter types, meters and metered records in the operator UI.

Forms run the services' own checks (``meter_type_check`` / ``meter_check``) so a rule broken in
the admin shows on the form, and saving calls the services: the admin never writes on its own.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.http import JsonResponse
from django.template.loader import render_to_string
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.utils.timezone import now as utc_now

from accounts.admin_scoping import AccountScopedAdmin, ReadOnlyAccountScopedAdmin, trimmed_number
from config.api.errors import ApiError
from console.capacity import meter_capacity_html
from metering import periods, selectors, services
from metering.admin_widgets import FieldRowsWidget, NameRowsWidget, ThresholdsWidget
from metering.models import Meter, MeteredRecord, MeterType

NEXT_RESETS_SHOWN = 5
THRESHOLD_EVENTS_SHOWN = 10
METERS_SHOWN = 20


def _copy_state(source, target) -> None:
    """Give the admin's object the saved row's state (the service saved its own instance)."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def _show_errors(form: forms.ModelForm, error: ApiError) -> None:
    """A service's error on the form: each detail on its field (API name -> model field)."""
    details = error.details or [{"field": "", "message": error.message}]
    for detail in details:
        field = services.model_field_name(detail.get("field", ""))
        form.add_error(field if field in form.fields else None, detail["message"])


def _local(instant, zone_name: str) -> str:
    return instant.astimezone(ZoneInfo(zone_name)).strftime("%Y-%m-%d %H:%M %Z")


def next_resets(cron: str, zone_name: str) -> list[dict[str, str]]:
    fires = periods.next_fires(cron, zone_name, utc_now(), NEXT_RESETS_SHOWN)
    return [{"local": _local(fire, zone_name), "utc": fire.strftime("%Y-%m-%d %H:%M")} for fire in fires]


def _items(value) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _value_rows(headers: list[str], rows: list[tuple], empty: str) -> str:
    """A read-only table of a meter's grouped values (numbers trimmed); ``empty`` without rows."""
    if not rows:
        return empty
    shown = [
        (
            label,
            trimmed_number(Decimal(str(value))) if isinstance(value, (int, float)) else value or "–",
            count,
        )
        for label, value, count in rows
    ]
    return format_html(
        '<table class="meter-value-rows"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        format_html_join("", "<th>{}</th>", ((header,) for header in headers)),
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", shown),
    )


class ServiceCheckedForm(forms.ModelForm):
    """Runs a service's check on the built instance and shows its errors on the form. A subclass
    defines ``service_check()``, calling its model's check service."""

    admin_account_id = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not callable(getattr(cls, "service_check", None)):
            raise TypeError(f"{cls.__name__} must define service_check(), calling a check service.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.previous = (
            copy.copy(self.instance) if self.instance.pk and not self.instance._state.adding else None
        )
        # Show 1000, not the column's 1000.000000000000.
        if isinstance(self.initial.get("capacity"), Decimal):
            self.initial["capacity"] = trimmed_number(self.initial["capacity"])

    def _post_clean(self):
        super()._post_clean()
        if self.errors:
            return
        try:
            self.service_check()
        except ApiError as error:
            _show_errors(self, error)


class MeterTypeForm(ServiceCheckedForm):
    class Meta:
        model = MeterType
        fields = [
            "account",
            "name",
            "description",
            "external_ref",
            "category",
            "unit",
            "aggregation",
            "capacity",
            "thresholds",
            "reset_cron",
            "timezone",
            "active_from",
            "active_to",
            "api_name",
            "status",
            "dimensions",
        ]
        widgets = {"thresholds": ThresholdsWidget(), "dimensions": NameRowsWidget()}

    def service_check(self) -> None:
        if self.instance.account_id is None:
            self.instance.account_id = self.admin_account_id
        services.meter_type_check(meter_type=self.instance, previous=self.previous)


@admin.register(MeterType)
class MeterTypeAdmin(AccountScopedAdmin):
    form = MeterTypeForm

    class Media:
        css = {"all": ["console/console.css"]}  # capacity bars and charts, as on the dashboard

    list_display = [
        "name",
        "category",
        "aggregation",
        "unit",
        "reset_cron",
        "timezone",
        "meter_count",
        "status",
        "created_at",
    ]
    list_filter = ["category", "aggregation", "status", "account"]
    search_fields = ["name", "external_ref", "api_name", "description", "category"]
    ordering = ["name"]
    actions = ["archive", "reactivate"]
    fieldsets = [
        (None, {"fields": ["account", "name", "description", "category", "unit", "aggregation"]}),
        (
            "Reset schedule",
            {
                "fields": ["reset_cron", "timezone", "next_resets_preview"],
                "description": "Period boundaries are computed in the type's timezone; a change "
                "applies to each meter from its next period.",
            },
        ),
        ("Capacity and thresholds", {"fields": ["capacity", "thresholds"]}),
        ("Active window", {"fields": ["active_from", "active_to"]}),
        (
            "Compatible APIs",
            {"fields": ["external_ref", "api_name", "status", "dimensions", "definition_deleted_at"]},
        ),
        ("Record", {"fields": ["meter_count", "created_at", "updated_at"]}),
        ("Meters", {"fields": ["meters_by_value"]}),
        ("Usage", {"fields": ["usage_chart"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(number_of_meters=Count("meters"))

    @admin.display(description="usage per day")
    def usage_chart(self, meter_type):
        # The dashboard's chart and query (console), for this type only.
        return render_to_string("admin/metering/includes/usage_chart.html", {"meter_type": meter_type})

    def get_fieldsets(self, request, obj=None):
        fieldsets = copy.deepcopy(self.fieldsets)
        if not request.user.is_superuser:
            fieldsets[0][1]["fields"].remove("account")
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        readonly = [
            "next_resets_preview",
            "meter_count",
            "created_at",
            "updated_at",
            "meters_by_value",
            "usage_chart",
            "definition_deleted_at",
        ]
        # The aggregation cannot change once the type exists, nor can the account it belongs to.
        return readonly + ["aggregation", "account"] if obj else readonly

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        account = self.account_for_request(request)
        if account is not None:
            initial.setdefault("account", account.pk)
        return initial

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        account = self.account_for_request(request, obj)
        form.admin_account_id = account.pk if account else None
        if "timezone" in form.base_fields:  # a searchable choice: the page's list of IANA names
            form.base_fields["timezone"].widget.attrs.update(
                {"list": "iana-timezones", "autocomplete": "off"}
            )
        return form

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["timezones"] = sorted(available_timezones())
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    @admin.display(description="meters", ordering="number_of_meters")
    def meter_count(self, meter_type):
        count = getattr(meter_type, "number_of_meters", None)
        return meter_type.meters.count() if count is None else count

    @admin.display(description="meters (highest value first)")
    def meters_by_value(self, meter_type):
        """The type's meters with their value against capacity (the first 20), linked to their pages."""
        if not meter_type.pk or meter_type._state.adding:
            return "–"
        return render_to_string(
            "admin/metering/includes/type_meters.html",
            {
                "meter_type": meter_type,
                "meters": list(selectors.meters_by_value(meter_type=meter_type)[:METERS_SHOWN]),
                "total": self.meter_count(meter_type),
            },
        )

    @admin.display(description="next five resets")
    def next_resets_preview(self, meter_type):
        fires, message = [], "Shown as you type a schedule and timezone."
        # Saved types only: a new one has its uuid already, and nothing typed yet to preview.
        if meter_type.pk and not meter_type._state.adding:
            try:
                fires = next_resets(meter_type.reset_cron, meter_type.timezone)
            except periods.InvalidSchedule as error:
                message = str(error)
        return render_to_string(
            "admin/metering/includes/next_resets.html", {"fires": fires, "message": message}
        )

    def get_urls(self):
        preview = path(
            "schedule-preview/",
            self.admin_site.admin_view(self.schedule_preview),
            name="metering_metertype_schedule_preview",
        )
        return [preview, *super().get_urls()]

    def schedule_preview(self, request):
        """The next resets of a schedule being typed (the change form's live preview)."""
        if not self.has_view_or_change_permission(request):
            return JsonResponse({"error": "Not allowed."}, status=403)
        try:
            return JsonResponse(
                {"fires": next_resets(request.GET.get("cron", ""), request.GET.get("timezone", ""))}
            )
        except periods.InvalidSchedule as error:
            return JsonResponse({"error": str(error)})

    def save_model(self, request, obj, form, change):
        if change:
            data = {
                name: form.cleaned_data[name]
                for name in form.changed_data
                if name in services.METER_TYPE_UPDATABLE
            }
            saved = services.meter_type_update(meter_type=obj, data=data)
        else:
            values = {name: form.cleaned_data[name] for name in form.cleaned_data if name != "account"}
            saved = services.meter_type_create(account_id=obj.account_id or form.admin_account_id, **values)
        _copy_state(saved, obj)

    def delete_model(self, request, obj):
        services.meter_type_delete(meter_type=obj)

    def delete_queryset(self, request, queryset):
        for meter_type in queryset:
            try:
                services.meter_type_delete(meter_type=meter_type)
            except ApiError as error:
                messages.error(request, f"{meter_type}: {error.message}")

    def _set_status(self, request, queryset, status: str) -> None:
        for meter_type in queryset:
            services.meter_type_update(meter_type=meter_type, data={"status": status})
        messages.success(request, f"{queryset.count()} meter type(s) set to {status}.")

    @admin.action(description="Archive selected meter types")
    def archive(self, request, queryset):
        self._set_status(request, queryset, MeterType.Status.ARCHIVED)

    @admin.action(description="Reactivate selected meter types")
    def reactivate(self, request, queryset):
        self._set_status(request, queryset, MeterType.Status.ACTIVE)


class MeterForm(ServiceCheckedForm):
    class Meta:
        model = Meter
        fields = [
            "meter_type",
            "meter_key",
            "user_id",
            "custom_fields",
            "capacity",
            "thresholds",
            "delete_on_reset",
        ]
        widgets = {"thresholds": ThresholdsWidget(), "custom_fields": FieldRowsWidget()}

    def service_check(self) -> None:
        if self.previous is None:
            # A new meter gets its account, capacity, thresholds and period from the service.
            self.instance.account_id = self.instance.meter_type.account_id
            services.meter_check(meter=self.instance, is_new=True)
        else:
            services.meter_check(meter=self.instance, is_new=False)


@admin.register(Meter)
class MeterAdmin(AccountScopedAdmin):
    form = MeterForm

    class Media:
        css = {"all": ["console/console.css"]}

    list_display = [
        "user_id",
        "meter_key",
        "meter_type",
        "value_against_capacity",
        "period_in_type_timezone",
        "delete_on_reset",
        "updated_at",
    ]
    list_filter = [("meter_type", admin.RelatedOnlyFieldListFilter), "delete_on_reset", "account"]
    list_select_related = ["meter_type"]
    search_fields = ["user_id", "meter_key"]
    ordering = ["-created_at"]
    actions = ["delete_after_next_reset"]
    state_fields = [
        "value_against_capacity",
        "period_in_type_timezone",
        "record_count",
        "last_ingested_at",
        "groups_table",
        "breakdowns_table",
        "carry_first",
        "carry_last",
        "created_at",
        "updated_at",
        "metered_records_history",
        "threshold_events",
    ]

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["meter_type", "meter_key", "user_id", "custom_fields"]})]
        # The current period first: what an operator opens a meter for.
        return [
            (None, {"fields": ["meter_type", "meter_key", "user_id"]}),
            (
                "Current period",
                {
                    "fields": [
                        "value_against_capacity",
                        "period_in_type_timezone",
                        "record_count",
                        "last_ingested_at",
                        "groups_table",
                        "breakdowns_table",
                        "carry_first",
                        "carry_last",
                    ]
                },
            ),
            ("History", {"fields": ["metered_records_history", "threshold_events"]}),
            (
                "Settings",
                {
                    "fields": [
                        "custom_fields",
                        "capacity",
                        "thresholds",
                        "delete_on_reset",
                        "created_at",
                        "updated_at",
                    ]
                },
            ),
        ]

    def get_readonly_fields(self, request, obj=None):
        # A meter's identity is fixed; its usage state is written by the usage ledger.
        return ["meter_type", "meter_key", "user_id", *self.state_fields] if obj else []

    @admin.display(description="groups")
    def groups_table(self, meter):
        """The value per guiding rule or category the records matched, as rows (not JSON)."""
        rows = [
            (item.get("key"), item.get("value"), item.get("recordCount")) for item in _items(meter.groups)
        ]
        return _value_rows(["group", "value", "records"], rows, "No groups: no record named one.")

    @admin.display(description="group breakdowns")
    def breakdowns_table(self, meter):
        """The value per combination of the grouped fields' values, as rows (not JSON)."""
        rows = [
            (
                ", ".join(f"{name} = {value}" for name, value in (item.get("fields") or {}).items()),
                item.get("value"),
                item.get("recordCount"),
            )
            for item in _items(meter.group_breakdowns)
        ]
        return _value_rows(
            ["fields", "value", "records"], rows, "No breakdowns: the type groups by no field."
        )

    @admin.display(description="value / capacity", ordering="value")
    def value_against_capacity(self, meter):
        return meter_capacity_html(meter)  # the value alone when the meter has no capacity

    @admin.display(description="period (meter type's timezone)", ordering="period_end")
    def period_in_type_timezone(self, meter):
        zone = meter.timezone
        return f"{_local(meter.period_start, zone)} → {_local(meter.period_end, zone)}"

    @admin.display(description="metered records (flushed periods)")
    def metered_records_history(self, meter):
        """The meter's last periods: a chart of value per period and a table, newest first, with a
        link to all its records (they outlive the meter, see the Metered records list)."""
        flushed = selectors.metered_records_of_meter(meter=meter)
        records = list(flushed.order_by("-period_start")[:CHART_PERIODS])
        return render_to_string(
            "admin/metering/includes/history.html",
            {
                "meter": meter,
                "records": records[:HISTORY_ROWS],
                "chart_records": records[::-1],
                "zone": meter.timezone,
                "total": flushed.count() if records else 0,
            },
        )

    @admin.display(description="threshold events")
    def threshold_events(self, meter):
        """The meter's last crossings (one per threshold and period), newest first."""
        return render_to_string(
            "admin/metering/includes/threshold_events.html",
            {
                "meter": meter,
                "events": list(selectors.threshold_events_of_meter(meter=meter)[:THRESHOLD_EVENTS_SHOWN]),
                "zone": meter.timezone,
            },
        )

    def save_model(self, request, obj, form, change):
        if change:
            data = {
                name: form.cleaned_data[name]
                for name in form.changed_data
                if name in services.METER_UPDATABLE
            }
            saved = services.meter_update(meter=obj, data=data)
        else:
            meter_type = form.cleaned_data["meter_type"]
            saved = services.meter_create(
                account_id=meter_type.account_id,
                meter_type_id=meter_type.pk,
                meter_key=form.cleaned_data["meter_key"],
                user_id=form.cleaned_data["user_id"],
                custom_fields=form.cleaned_data.get("custom_fields") or {},
            )
        _copy_state(saved, obj)

    def delete_model(self, request, obj):
        services.meter_delete(meter=obj)

    def delete_queryset(self, request, queryset):
        for meter in queryset:
            services.meter_delete(meter=meter)

    @admin.action(description="Delete selected meters after their next reset")
    def delete_after_next_reset(self, request, queryset):
        for meter in queryset:
            services.meter_update(meter=meter, data={"delete_on_reset": True})
        messages.success(request, f"{queryset.count()} meter(s) will be deleted after their next reset.")


@admin.register(MeteredRecord)
class MeteredRecordAdmin(ReadOnlyAccountScopedAdmin):
    """Flushed periods: history, never edited."""

    list_display = ["user_id", "meter_key", "meter_type_name", "period_start", "period_end", "value", "unit"]
    list_filter = ["meter_type_name", "account"]
    search_fields = ["user_id", "meter_key", "meter_type_name"]
    ordering = ["-period_end"]
    date_hierarchy = "period_end"


# Data corrections have an admin module of their own (triage, fix hints, reprocess).
from metering import admin_corrections  # noqa: E402, F401 - registers DataCorrectionAdmin

# The meter's page: flushed periods charted and listed (flush and reset, metering/flush.py).
HISTORY_ROWS = 12
CHART_PERIODS = 24


# =============================================================================================
# Usage ledger, data correction, thresholds and filtering rules (issue 4).
# =============================================================================================


from django.db.models import OuterRef, Subquery  # noqa: E402

from metering.compat import amberflo  # noqa: E402
from metering.models import (  # noqa: E402
    MeterEventFilteringRule,
    ThresholdEvent,
    UsageRecord,
)


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAccountScopedAdmin):
    """The usage ledger (append-only). Counting every row of a large ledger is skipped."""

    list_display = [
        "timestamp",
        "user_id",
        "meter_type_name",
        "value_shown",
        "source",
        "source_ref",
        "idempotency_key",
        "created_at",
    ]
    list_filter = ["source", "account"]
    search_fields = ["=user_id", "=idempotency_key", "=source_ref"]
    ordering = ["-id"]
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request):
        # The ledger keeps the type's id (no foreign key): its name is looked up per shown row.
        name = MeterType.objects.filter(pk=OuterRef("meter_type_id")).values("name")[:1]
        return super().get_queryset(request).annotate(meter_type_name=Subquery(name))

    @admin.display(description="meter type")
    def meter_type_name(self, record):
        return record.meter_type_name or str(record.meter_type_id)

    @admin.display(description="value", ordering="value")
    def value_shown(self, record):
        return trimmed_number(record.value)


@admin.register(ThresholdEvent)
class ThresholdEventAdmin(ReadOnlyAccountScopedAdmin):
    list_display = [
        "crossed_at",
        "meter",
        "meter_type",
        "name",
        "threshold_index",
        "threshold_value",
        "value",
        "period_start",
    ]
    list_filter = ["name", ("meter__meter_type", admin.RelatedOnlyFieldListFilter), "account"]
    list_select_related = ["meter__meter_type"]
    readonly_fields = ["meter_type"]  # beside the meter on the event's page too
    search_fields = ["=meter__user_id", "name"]
    ordering = ["-crossed_at"]

    @admin.display(description="meter type", ordering="meter__meter_type__name")
    def meter_type(self, event):
        return event.meter.meter_type.name


class FilteringRuleForm(forms.ModelForm):
    class Meta:
        model = MeterEventFilteringRule
        fields = ["meter_type", "dimension_name", "dimension_values", "action"]
        widgets = {"dimension_values": NameRowsWidget(item="value")}


@admin.register(MeterEventFilteringRule)
class MeterEventFilteringRuleAdmin(AccountScopedAdmin):
    """Amberflo filtering rules, applied to /ingest events before the ledger."""

    form = FilteringRuleForm
    list_display = ["meter_type", "dimension_name", "action", "values_shown", "updated_at"]
    list_filter = ["action", ("meter_type", admin.RelatedOnlyFieldListFilter), "account"]
    list_select_related = ["meter_type"]
    search_fields = ["dimension_name", "meter_type__api_name"]
    ordering = ["meter_type__api_name", "dimension_name"]

    @admin.display(description="values")
    def values_shown(self, rule):
        return ", ".join(rule.dimension_values)

    def save_model(self, request, obj, form, change):
        meter_type = form.cleaned_data["meter_type"]
        saved = amberflo.filtering_rule_save(
            account_id=meter_type.account_id,
            meter_api_name=meter_type.api_name,
            dimension_name=form.cleaned_data["dimension_name"],
            dimension_values=form.cleaned_data["dimension_values"],
            action=form.cleaned_data["action"],
            rule_id=str(obj.pk) if change else None,
        )
        _copy_state(saved, obj)

    def delete_model(self, request, obj):
        amberflo.filtering_rule_delete(rule=obj)

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            amberflo.filtering_rule_delete(rule=rule)
