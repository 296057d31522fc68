"""Tenancy in the admin: a non-superuser sees and edits only their own account's objects.

Every app's ModelAdmin inherits ``AccountScopedAdmin``. It filters querysets, limits foreign-key
choices to the user's account, hides the account field from non-superusers and sets it on save.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.db import models
from django.utils.formats import date_format
from django.utils.timezone import localtime

from accounts.selectors import account_for_user


def user_account_id(request):
    if request.user.is_superuser:
        return None
    account = account_for_user(request.user)
    # A staff user with no account sees nothing (an impossible account id).
    return account.pk if account else "00000000-0000-0000-0000-000000000000"


def trimmed_number(value: Decimal | None) -> str:
    """``400`` and ``283.5``, never the column's ``400.000000000000`` (nor ``4E+2``); ``–`` for none."""
    if value is None:
        return "–"
    return f"{value.normalize():f}" if value != 0 else "0"


class TrimmedDecimalInput(forms.NumberInput):
    """A decimal input showing ``0.01``, not the stored ``0.010000000000``."""

    def format_value(self, value):
        if isinstance(value, Decimal):
            return trimmed_number(value)
        return super().format_value(value)


def instant_text(value) -> str:
    """An instant as every admin page shows one (config/formats: ``2026-12-07 11:36:37 UTC``)."""
    if value is None:
        return "—"
    return date_format(localtime(value), "DATETIME_FORMAT")


TRIMMED_DECIMALS = {models.DecimalField: {"widget": TrimmedDecimalInput}}
SHOWN = "_shown"


def _decimal_names(model) -> set[str]:
    return {field.name for field in model._meta.concrete_fields if isinstance(field, models.DecimalField)}


class AccountScopedAdmin(admin.ModelAdmin):
    """Decimals are trimmed everywhere: in inputs (``TrimmedDecimalInput``), in lists, and on read-only
    pages (a decimal field ``value`` is shown through ``value_shown``, made here for each)."""

    account_field = "account"
    formfield_overrides = TRIMMED_DECIMALS

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        for field in model._meta.concrete_fields:
            if isinstance(field, models.DecimalField) and not hasattr(self, field.name + SHOWN):
                setattr(self, field.name + SHOWN, self._trimmed_display(field))

    @staticmethod
    def _trimmed_display(field):
        def shown(obj):
            return trimmed_number(getattr(obj, field.attname))

        shown.short_description = field.verbose_name  # type: ignore[attr-defined]
        shown.admin_order_field = field.name  # type: ignore[attr-defined]
        return shown

    def _trimmed_names(self, names) -> list:
        decimals = _decimal_names(self.model)
        return [name + SHOWN if isinstance(name, str) and name in decimals else name for name in names]

    def get_list_display(self, request):
        return self._trimmed_names(super().get_list_display(request))

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        account_id = user_account_id(request)
        if account_id is None:
            return queryset
        return queryset.filter(
            **{
                f"{self.account_field}_id"
                if "__" not in self.account_field
                else f"{self.account_field}": account_id
            }
        )

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser and "__" not in self.account_field:
            exclude.append(self.account_field)
        return exclude

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if not request.user.is_superuser:
            filters = [f for f in filters if f != self.account_field]
        return filters

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        account_id = user_account_id(request)
        if account_id is not None:
            model = db_field.remote_field.model
            if model.__name__ == "Account":
                kwargs["queryset"] = model.objects.filter(pk=account_id)
            elif any(
                f.name == "account" for f in model._meta.get_fields() if isinstance(f, models.ForeignKey)
            ):
                kwargs["queryset"] = model.objects.filter(account_id=account_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if (
            not change
            and "__" not in self.account_field
            and not getattr(obj, f"{self.account_field}_id", None)
        ):
            account = account_for_user(request.user)
            if account is not None:
                setattr(obj, self.account_field, account)
        super().save_model(request, obj, form, change)

    def account_for_request(self, request, obj=None):
        if obj is not None and getattr(obj, "account_id", None):
            return obj.account
        return account_for_user(request.user)


class ReadOnlyAccountScopedAdmin(AccountScopedAdmin):
    """History and logs (ledger rows, collected batches, runs): listed and shown, never written
    in the admin; state changes only through admin actions that call services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        # Every field is shown read-only: a decimal through its trimmed display.
        return self._trimmed_names(super().get_fields(request, obj))

    def get_fieldsets(self, request, obj=None):
        return [
            (name, {**options, "fields": self._trimmed_names(options["fields"])})
            for name, options in super().get_fieldsets(request, obj)
        ]
