"""Admin users and groups: a staff user who is not a superuser manages only its own account's users
and never climbs out of what it holds itself.

For a non-superuser editor:
- the user list, change, delete and password pages reach only non-superusers linked to the
  editor's account (anything else is a 404, as if it did not exist);
- ``is_superuser`` is not a field of its forms (a posted value is ignored);
- the groups and permissions it can give are the ones it holds itself; a user's groups and
  permissions outside that set are kept as they are (the editor can neither grant nor see them);
- the account inline offers only the editor's account, and a user it adds is linked to it;
- groups are shared by every account: it sees its own groups and changes none.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

from accounts import services
from accounts.admin_login import ThrottledAdminAuthenticationForm
from accounts.admin_scoping import user_account_id
from accounts.models import Account, AccountUser
from accounts.selectors import account_for_user

User = get_user_model()


def grantable_permissions(user):
    """The permissions ``user`` may give to others: every one for a superuser, else its own."""
    if user.is_superuser:
        return Permission.objects.all()
    return Permission.objects.filter(Q(user=user) | Q(group__user=user)).distinct()


def grantable_groups(user):
    if user.is_superuser:
        return Group.objects.all()
    return Group.objects.filter(user=user)


class AccountUserInline(admin.StackedInline):
    model = AccountUser
    can_delete = False
    extra = 0

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        account_id = user_account_id(request)
        if db_field.name == "account" and account_id is not None:
            kwargs["queryset"] = Account.objects.filter(pk=account_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


admin.site.login_form = ThrottledAdminAuthenticationForm
admin.site.unregister(User)


@admin.register(User)
class AccountUserAdmin(UserAdmin):
    inlines = [AccountUserInline]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        account_id = user_account_id(request)
        if account_id is None:
            return queryset
        return queryset.filter(account_link__account_id=account_id, is_superuser=False)

    def _reachable(self, request, obj) -> bool:
        if obj is None or request.user.is_superuser:
            return True
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) and self._reachable(request, obj)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._reachable(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._reachable(request, obj)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f != "is_superuser"]})
            for name, options in fieldsets
        ]

    def get_list_filter(self, request):
        if request.user.is_superuser:
            return super().get_list_filter(request)
        return ["is_staff", "is_active"]

    def formfield_for_manytomany(self, db_field, request=None, **kwargs):
        if db_field.name == "user_permissions":
            kwargs["queryset"] = grantable_permissions(request.user).select_related("content_type")
        elif db_field.name == "groups":
            kwargs["queryset"] = grantable_groups(request.user)
        return super().formfield_for_manytomany(db_field, request=request, **kwargs)

    def save_related(self, request, form, formsets, change):
        editor = request.user
        user = form.instance
        kept_permissions, kept_groups = [], []
        if change and not editor.is_superuser:
            # The form only offers what the editor holds: what the user has beyond that stays.
            kept_permissions = list(
                user.user_permissions.exclude(pk__in=grantable_permissions(editor).values("pk"))
            )
            kept_groups = list(user.groups.exclude(pk__in=grantable_groups(editor).values("pk")))
        super().save_related(request, form, formsets, change)
        if kept_permissions:
            user.user_permissions.add(*kept_permissions)
        if kept_groups:
            user.groups.add(*kept_groups)
        if not editor.is_superuser and not AccountUser.objects.filter(user=user).exists():
            account = account_for_user(editor)
            if account is not None:
                services.account_user_link(user=user, account=account)


admin.site.unregister(Group)


@admin.register(Group)
class AccountGroupAdmin(GroupAdmin):
    """Groups span accounts, so only a superuser adds, changes or deletes one."""

    def get_queryset(self, request):
        return grantable_groups(request.user)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
