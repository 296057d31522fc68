"""Console pages in the admin: meters near capacity, across every meter type of the account.

Read-only lists built on proxy models: they change nothing (each row links to the object's own
page, where the owning app's admin and services do the writing), and they follow the owning
model's permissions, so a staff user who may view meters may view these.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import F
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin_scoping import AccountScopedAdmin
from console import selectors
from console.capacity import meter_capacity_html
from console.models import MeterNearCapacity


class CapacityLevelFilter(admin.SimpleListFilter):
    title = "level"
    parameter_name = "level"

    def lookups(self, request, model_admin):
        return [("over", "at or over capacity"), ("near", "near (below capacity)")]

    def queryset(self, request, queryset):
        # The list holds near-or-over meters only, so "over" and "near" split it at the capacity.
        if self.value() == "over":
            return queryset.filter(value__gte=F("capacity"))
        if self.value() == "near":
            return queryset.filter(value__lt=F("capacity"))
        return queryset


@admin.register(MeterNearCapacity)
class MeterNearCapacityAdmin(AccountScopedAdmin):
    list_display = ["meter", "meter_key", "meter_type", "value_against_capacity", "period_end"]
    list_display_links = None
    list_filter = [CapacityLevelFilter, ("meter_type", admin.RelatedOnlyFieldListFilter), "account"]
    list_select_related = ["meter_type"]
    search_fields = ["user_id", "meter_key", "meter_type__name"]
    list_per_page = 50
    actions = None

    def get_queryset(self, request):
        return selectors.near_capacity(super().get_queryset(request))

    class Media:
        css = {"all": ["console/console.css"]}

    def get_ordering(self, request):
        # Fullest first; a capacity of 0 (no percentage: over as soon as anything is used) leads.
        return [F("percent_of_capacity").desc(nulls_first=True), "-value", "user_id"]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # A meter near capacity is a meter: its page is the meter's own (value, history, settings).
        meter = self.get_object(request, object_id)
        if meter is None:
            return super().change_view(request, object_id, form_url, extra_context)
        return HttpResponseRedirect(reverse("admin:metering_meter_change", args=[meter.pk]))

    # Read-only, with the permissions of the meters it lists.
    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("metering.view_meter")

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="meter (user id)", ordering="user_id")
    def meter(self, meter):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:metering_meter_change", args=[meter.pk]), meter.user_id
        )

    @admin.display(description="value / capacity", ordering="percent_of_capacity")
    def value_against_capacity(self, meter):
        return meter_capacity_html(meter)


# django-oauth-toolkit registers its own models (applications, tokens, grants): Application
# Accesses (accounts) already show what an operator needs of them, scoped to the account, with
# secrets shown once; the toolkit's pages would show every account's clients side by side.
def _hide_oauth_toolkit_admin() -> None:
    from oauth2_provider import models as oauth_models

    for name in ("Application", "AccessToken", "RefreshToken", "Grant", "IDToken"):
        model = getattr(oauth_models, name, None)
        if model is not None and admin.site.is_registered(model):
            admin.site.unregister(model)


_hide_oauth_toolkit_admin()
