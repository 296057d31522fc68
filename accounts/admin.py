"""Accounts, their users, and the credentials that act for them (Application Accesses, API keys).

A secret is shown once, on the page that answers its creation (or rotation); afterwards a
credential's page shows its use (tokens, last use) and a Revoke button (a confirmation page that
calls the service), never the secret.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from accounts import (
    admin_users,  # noqa: F401 - registers the user and group admins
    services,
)
from accounts.admin_scoping import AccountScopedAdmin, user_account_id
from accounts.models import Account, ApiKey, ApplicationAccess
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

    def get_readonly_fields(self, request, obj=None):
        # The licence is the operator's to give, not the account's staff's.
        return [] if request.user.is_superuser else ["has_billing_license"]


class ApplicationAccessForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES], widget=forms.CheckboxSelectMultiple, initial=ALL_SCOPES
    )

    class Meta:
        model = ApplicationAccess
        fields = ["account", "name", "scopes", "is_active"]


# A new secret waits in the user's session between the POST that made it and the one GET that
# shows it (redirect after POST): a reload finds nothing and submits nothing.
SECRET_ONCE_SESSION_KEY = "accounts.secret_once"


def _show_secret(request, *, title, access=None, api_key=None, secret):
    request.session[SECRET_ONCE_SESSION_KEY] = {
        "title": title,
        "access": str(access.pk) if access else None,
        "api_key": str(api_key.pk) if api_key else None,
        "secret": secret,
    }
    return HttpResponseRedirect(reverse("admin:accounts_secret_once"), status=303)


def secret_once_view(request):
    """Shows the secret the last POST made, once: it is taken out of the session as it is shown."""
    shown = request.session.pop(SECRET_ONCE_SESSION_KEY, None)
    account_id = user_account_id(request)
    access = api_key = None
    if shown:
        scope = {} if account_id is None else {"account_id": account_id}
        access = (
            ApplicationAccess.objects.filter(pk=shown["access"], **scope).first() if shown["access"] else None
        )
        api_key = ApiKey.objects.filter(pk=shown["api_key"], **scope).first() if shown["api_key"] else None
    if not (access or api_key):
        shown = None
    return TemplateResponse(
        request,
        "admin/accounts/secret_once.html",
        {
            **admin.site.each_context(request),
            "title": shown["title"] if shown else "Secret already shown",
            "access": access,
            "api_key": api_key,
            "secret": shown["secret"] if shown else "",
            "gone": shown is None,
            "opts": (ApiKey if api_key else ApplicationAccess)._meta,
        },
    )


class RevokeButtonMixin:
    """A Revoke button on a credential's page: a confirmation page (GET) that revokes on POST,
    through ``revoke_one`` (a service), then back to the credential's page. Only for a credential
    the user may change in their own account; another account's is 404. A subclass defines
    ``revoke_one(obj)``, calling its model's revoke service."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not callable(getattr(cls, "revoke_one", None)):
            raise TypeError(f"{cls.__name__} must define revoke_one(obj), calling a revoke service.")

    def get_urls(self):
        opts = self.model._meta
        return [
            path(
                "<path:object_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name=f"{opts.app_label}_{opts.model_name}_revoke",
            ),
            *super().get_urls(),
        ]

    def revoke_view(self, request, object_id):
        obj = self.get_object(request, object_id)  # the user's own account only
        if obj is None:
            raise Http404(f"No {self.model._meta.verbose_name} with this id.")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        change_url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
        if request.method == "POST":
            self.revoke_one(obj)
            self.log_change(request, obj, "Revoked.")
            messages.success(
                request, f"“{obj.name}” is revoked: the API refuses its credentials from now on."
            )
            return HttpResponseRedirect(change_url)
        return TemplateResponse(
            request,
            "admin/accounts/revoke_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Revoke {obj._meta.verbose_name}?",
                "object": obj,
                "opts": obj._meta,
                "change_url": change_url,
            },
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.is_active and self.has_change_permission(request, obj):
            opts = obj._meta
            context["revoke_url"] = reverse(f"admin:{opts.app_label}_{opts.model_name}_revoke", args=[obj.pk])
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )


TOKENS_SHOWN = 20


@admin.register(ApplicationAccess)
class ApplicationAccessAdmin(RevokeButtonMixin, AccountScopedAdmin):
    form = ApplicationAccessForm
    change_form_template = "admin/accounts/credential_change_form.html"
    list_display = ["name", "account", "client_id", "is_active", "token_count", "last_used_at", "created_at"]
    list_filter = ["is_active", "account"]
    search_fields = ["name", "application__client_id"]
    ordering = ["name"]
    list_select_related = ["application", "account"]
    actions = ["revoke", "rotate_secret"]
    readonly_fields = ["client_id", "token_count", "tokens", "last_used_at", "created_at"]

    class Media:
        css = {"all": ["accounts/credentials.css"]}

    def get_fieldsets(self, request, obj=None):
        identity = ["account", "name"] if request.user.is_superuser else ["name"]
        if obj is None:
            return [(None, {"fields": [*identity, "scopes", "is_active"]})]
        return [
            (None, {"fields": [*identity, "client_id", "is_active", "last_used_at", "created_at"]}),
            ("Access tokens", {"fields": ["tokens"]}),
            ("Scopes", {"fields": ["scopes"]}),
        ]

    @admin.display(description="tokens")
    def token_count(self, obj):
        return obj.application.accesstoken_set.count()

    @admin.display(description="access tokens")
    def tokens(self, obj):
        """The tokens issued and not purged yet (their values are stored hashed, so never shown)."""
        tokens = list(obj.application.accesstoken_set.order_by("-created")[:TOKENS_SHOWN])
        if not tokens:
            return format_html(
                '<p id="access-tokens" class="help">{}</p>', "No token: none issued, or revoked."
            )
        now = timezone.now()
        rows = format_html_join(
            "",
            '<tr class="access-token" data-state="{}"><td>{}</td><td>{}</td><td>{}</td>'
            "<td><code>{}</code></td></tr>",
            (
                (
                    "active" if token.expires > now else "expired",
                    token.created.strftime("%Y-%m-%d %H:%M:%S"),
                    token.expires.strftime("%Y-%m-%d %H:%M:%S"),
                    "active" if token.expires > now else "expired",
                    Truncator(token.scope).chars(120),
                )
                for token in tokens
            ),
        )
        total = obj.application.accesstoken_set.count()
        more = (
            format_html("<p>{} older token(s) not shown.</p>", total - len(tokens))
            if total > len(tokens)
            else ""
        )
        return format_html(
            '<table id="access-tokens"><thead><tr><th>issued (UTC)</th><th>expires (UTC)</th><th>state</th>'
            "<th>scope</th></tr></thead><tbody>{}</tbody></table>{}",
            rows,
            more,
        )

    def revoke_one(self, obj) -> None:
        services.application_access_revoke(access=obj)

    def get_urls(self):
        return [
            path("secret/", self.admin_site.admin_view(secret_once_view), name="accounts_secret_once"),
            path(
                "<path:object_id>/rotate/",
                self.admin_site.admin_view(self.rotate_view),
                name="accounts_applicationaccess_rotate",
            ),
            *super().get_urls(),
        ]

    def rotate_view(self, request, object_id):
        """Rotate secret, beside Revoke: a confirmation (GET), a new secret shown once (POST)."""
        obj = self.get_object(request, object_id)  # the user's own account only
        if obj is None:
            raise Http404("No Application Access with this id.")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        if request.method == "POST":
            secret = services.application_access_rotate_secret(access=obj)
            self.log_change(request, obj, "Client secret rotated.")
            return _show_secret(request, title="Client secret rotated", access=obj, secret=secret)
        change_url = reverse("admin:accounts_applicationaccess_change", args=[obj.pk])
        return TemplateResponse(
            request,
            "admin/accounts/revoke_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": "Rotate the client secret?",
                "object": obj,
                "opts": obj._meta,
                "change_url": change_url,
                "rotating": True,
            },
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.is_active and self.has_change_permission(request, obj):
            context["rotate_url"] = reverse("admin:accounts_applicationaccess_rotate", args=[obj.pk])
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    def save_model(self, request, obj, form, change):
        if change:
            services.application_access_update(
                access=obj, scopes=form.cleaned_data["scopes"], is_active=form.cleaned_data["is_active"]
            )
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

    @admin.action(description="Revoke (deactivate and delete tokens)", permissions=["change"])
    def revoke(self, request, queryset):
        for access in queryset:
            services.application_access_revoke(access=access)
        messages.success(request, f"Revoked {queryset.count()} Application Access(es).")

    @admin.action(description="Rotate client secret (shown once)", permissions=["change"])
    def rotate_secret(self, request, queryset):
        if queryset.count() != 1:
            messages.error(request, "Select exactly one Application Access to rotate its secret.")
            return None
        access = queryset.get()
        secret = services.application_access_rotate_secret(access=access)
        return _show_secret(request, title="Client secret rotated", access=access, secret=secret)


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES], widget=forms.CheckboxSelectMultiple, initial=ALL_SCOPES
    )

    class Meta:
        model = ApiKey
        fields = ["account", "name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(RevokeButtonMixin, AccountScopedAdmin):
    form = ApiKeyForm
    change_form_template = "admin/accounts/credential_change_form.html"
    list_display = ["name", "account", "prefix", "is_active", "last_used_at", "created_at"]
    list_filter = ["is_active", "account"]
    search_fields = ["name", "prefix"]
    ordering = ["-created_at"]
    actions = ["revoke"]
    shown = ["prefix", "is_active", "last_used_at", "created_at"]

    class Media:
        css = {"all": ["accounts/credentials.css"]}

    def get_fields(self, request, obj=None):
        fields = ["name", "scopes"]
        if request.user.is_superuser:
            fields.insert(0, "account")
        return fields + (self.shown if obj else [])

    def get_readonly_fields(self, request, obj=None):
        # A key never changes: it is revoked (and another one created) instead.
        return ["account", "name", "scopes", *self.shown] if obj else []

    def revoke_one(self, obj) -> None:
        services.api_key_revoke(key=obj)

    def save_model(self, request, obj, form, change):
        if change:
            return
        account = form.cleaned_data.get("account") or self.account_for_request(request)
        key, raw = services.api_key_create(
            account=account, name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"]
        )
        obj.pk = key.pk
        request._new_api_key = (key, raw)

    def response_add(self, request, obj, post_url_continue=None):
        key, raw = request._new_api_key
        return _show_secret(request, title="API key created", api_key=key, secret=raw)

    @admin.action(description="Revoke", permissions=["change"])
    def revoke(self, request, queryset):
        for key in queryset:
            services.api_key_revoke(key=key)
        messages.success(request, f"Revoked {queryset.count()} API key(s).")
