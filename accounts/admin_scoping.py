"""Tenancy in the admin: a non-superuser sees and edits only their own account's objects.

Every app's ModelAdmin inherits ``AccountScopedAdmin``. It filters querysets, limits foreign-key
choices to the user's account, hides the account field from non-superusers and sets it on save.
"""

from __future__ import annotations

from django.contrib import admin
from django.db import models

from accounts.selectors import account_for_user


def user_account_id(request):
    if request.user.is_superuser:
        return None
    account = account_for_user(request.user)
    # A staff user with no account sees nothing (an impossible account id).
    return account.pk if account else "00000000-0000-0000-0000-000000000000"


class AccountScopedAdmin(admin.ModelAdmin):
    account_field = "account"

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
