from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.template.response import TemplateResponse

from accounts import services
from accounts.admin_scoping import AccountScopedAdmin, user_account_id
from accounts.models import Account, AccountUser, ApiKey, ApplicationAccess
from accounts.scopes import ALL_SCOPES


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "has_billing_license", "created_at"]
    search_fields = ["name", "id"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        account_id = user_account_id(request)
        return queryset if account_id is None else queryset.filter(pk=account_id)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class AccountUserInline(admin.StackedInline):
    model = AccountUser
    can_delete = False
    extra = 0


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class AccountUserAdmin(UserAdmin):
    inlines = [AccountUserInline]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        account_id = user_account_id(request)
        return queryset if account_id is None else queryset.filter(account_link__account_id=account_id)


class ApplicationAccessForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=[(s, s) for s in ALL_SCOPES], widget=forms.CheckboxSelectMultiple,
                                       initial=ALL_SCOPES)

    class Meta:
        model = ApplicationAccess
        fields = ["account", "name", "scopes", "is_active"]


def _show_secret(request, *, title, access=None, api_key=None, secret):
    return TemplateResponse(request, "admin/accounts/secret_once.html", {
        "title": title, "access": access, "api_key": api_key, "secret": secret,
        "opts": (ApplicationAccess if access else ApiKey)._meta,
        "site_header": admin.site.site_header, "has_permission": True,
    })


@admin.register(ApplicationAccess)
class ApplicationAccessAdmin(AccountScopedAdmin):
    form = ApplicationAccessForm
    list_display = ["name", "account", "client_id", "is_active", "token_count", "last_used_at", "created_at"]
    list_filter = ["is_active", "account"]
    search_fields = ["name", "application__client_id"]
    ordering = ["name"]
    actions = ["revoke", "rotate_secret"]
    readonly_fields = ["client_id", "token_count", "last_used_at", "created_at"]

    def get_fields(self, request, obj=None):
        fields = ["name", "scopes", "is_active"]
        if request.user.is_superuser:
            fields.insert(0, "account")
        return fields + (["client_id", "token_count", "last_used_at", "created_at"] if obj else [])

    @admin.display(description="tokens")
    def token_count(self, obj):
        return obj.application.accesstoken_set.count()

    def save_model(self, request, obj, form, change):
        if change:
            services.application_access_update(access=obj, scopes=form.cleaned_data["scopes"],
                                               is_active=form.cleaned_data["is_active"])
            return
        account = form.cleaned_data.get("account") or self.account_for_request(request)
        access, secret = services.application_access_create(
            account=account, name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"]
        )
        obj.pk = access.pk
        request._new_client_secret = (access, secret)

    def response_add(self, request, obj, post_url_continue=None):
        access, secret = request._new_client_secret
        return _show_secret(request, title="Application Access created", access=access, secret=secret)

    @admin.action(description="Revoke (deactivate and delete tokens)")
    def revoke(self, request, queryset):
        for access in queryset:
            services.application_access_revoke(access=access)
        messages.success(request, f"Revoked {queryset.count()} Application Access(es).")

    @admin.action(description="Rotate client secret (shown once)")
    def rotate_secret(self, request, queryset):
        if queryset.count() != 1:
            messages.error(request, "Select exactly one Application Access to rotate its secret.")
            return None
        access = queryset.get()
        secret = services.application_access_rotate_secret(access=access)
        return _show_secret(request, title="Client secret rotated", access=access, secret=secret)


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=[(s, s) for s in ALL_SCOPES], widget=forms.CheckboxSelectMultiple,
                                       initial=ALL_SCOPES)

    class Meta:
        model = ApiKey
        fields = ["account", "name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(AccountScopedAdmin):
    form = ApiKeyForm
    list_display = ["name", "account", "prefix", "is_active", "last_used_at", "created_at"]
    list_filter = ["is_active", "account"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        fields = ["name", "scopes"]
        if request.user.is_superuser:
            fields.insert(0, "account")
        return fields

    def get_readonly_fields(self, request, obj=None):
        return ["name", "scopes"] if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            return
        account = form.cleaned_data.get("account") or self.account_for_request(request)
        key, raw = services.api_key_create(account=account, name=form.cleaned_data["name"],
                                           scopes=form.cleaned_data["scopes"])
        obj.pk = key.pk
        request._new_api_key = (key, raw)

    def response_add(self, request, obj, post_url_continue=None):
        key, raw = request._new_api_key
        return _show_secret(request, title="API key created", api_key=key, secret=raw)

    @admin.action(description="Revoke")
    def revoke(self, request, queryset):
        for key in queryset:
            services.api_key_revoke(key=key)
        messages.success(request, "Revoked.")
