"""Global parameters in the admin: a tree by slash hierarchy, masked sensitive values, a write-only value.

A sensitive value is never rendered: the change list and the change form show a fixed mask, and
the value field never echoes what was typed (not even after a validation error). Entering a new
value re-encrypts it; leaving the field blank keeps the stored one. Every write goes through
``parameters.services``.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import CharField, F, Func
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.text import Truncator
from django.views.decorators.debug import sensitive_post_parameters

from accounts.admin_scoping import AccountScopedAdmin
from config.api.errors import ApiError
from parameters import services
from parameters.models import MASK, Parameter

# The form field that takes a value; the model's value/encrypted_value columns are never form fields.
VALUE_FIELD = "new_value"


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value back into the page, and hides characters as they are typed."""

    def __init__(self, attrs=None):
        super().__init__(
            {
                "rows": 3,
                "cols": 80,
                "autocomplete": "off",
                "spellcheck": "false",
                "style": "-webkit-text-security: disc; font-family: monospace",
                **(attrs or {}),
            }
        )

    def format_value(self, value):
        return None


class ParameterAdminForm(forms.ModelForm):
    new_value = forms.CharField(label="Value", required=False, strip=False, widget=WriteOnlyTextarea())

    # Set by ParameterAdmin.get_form: the account a non-superuser works in.
    admin_account = None

    class Meta:
        model = Parameter
        fields = ["account", "name", "type", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields[VALUE_FIELD]
        if self.instance._state.adding:
            field.required = True
            field.help_text = (
                "1-8192 characters. A sensitive value is encrypted at rest and can never be shown "
                "again; a standard value is stored as plain text."
            )
        elif self.instance.is_sensitive:
            field.help_text = (
                "Write-only: enter a new value to replace (and re-encrypt) it; leave blank to keep it."
            )
        else:
            field.widget = forms.Textarea(attrs={"rows": 3, "cols": 80})
            field.initial = self.instance.value
            field.help_text = "1-8192 characters. Leave blank to keep the current value."

    def clean(self):
        cleaned = super().clean()
        if self._errors:
            return cleaned
        new_value = cleaned.get(VALUE_FIELD) or None
        try:
            if self.instance._state.adding:
                account = cleaned.get("account") or self.admin_account
                if account is None:
                    raise forms.ValidationError("Choose the account the parameter belongs to.")
                services.parameter_validate_new(
                    account=account,
                    name=cleaned.get("name") or "",
                    type=cleaned.get("type") or "",
                    value=new_value or "",
                    description=cleaned.get("description") or "",
                )
            else:
                services.parameter_validate_update(
                    description=cleaned.get("description") or "", value=new_value
                )
        except ApiError as exc:
            self._add_api_error(exc)
        return cleaned

    def _add_api_error(self, exc: ApiError) -> None:
        if not exc.details:
            self.add_error(None, exc.message)
            return
        for detail in exc.details:
            field = VALUE_FIELD if detail["field"] == "value" else detail["field"]
            self.add_error(field if field in self.fields else None, detail["message"])


class TopLevelGroupFilter(admin.SimpleListFilter):
    """Filter by the first level of the name (``credentials/…``)."""

    title = "group"
    parameter_name = "group"

    def lookups(self, request, model_admin):
        names = model_admin.get_queryset(request).filter(name__contains="/").values_list("name", flat=True)
        groups = sorted({name.split("/", 1)[0] for name in names})
        return [(group, f"{group}/") for group in groups]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(name__startswith=f"{self.value()}/")
        return queryset


class TreeOrder(Func):
    """Orders names level by level: "/" becomes a space, which sorts byte-wise before every character a
    name may hold, so ``a/x`` comes right after ``a`` and before ``a-b``: children follow their parent.
    Byte-wise whatever the database's collation (the vendor is read when the query compiles)."""

    template = "%(function)s(%(expressions)s, '/', ' ') COLLATE %(collation)s"
    function = "REPLACE"
    output_field = CharField()

    def __init__(self):
        super().__init__(F("name"))

    def as_sql(self, compiler, connection, **extra_context):
        extra_context["collation"] = connection.ops.quote_name(
            "C" if connection.vendor == "postgresql" else "BINARY"
        )
        return super().as_sql(compiler, connection, **extra_context)


@method_decorator(sensitive_post_parameters(VALUE_FIELD), name="changeform_view")
@admin.register(Parameter)
class ParameterAdmin(AccountScopedAdmin):
    form = ParameterAdminForm
    list_display = ["tree_name", "type", "shown_value", "short_description", "account", "updated_at"]
    list_display_links = ["tree_name"]
    list_filter = ["type", TopLevelGroupFilter, "account"]
    search_fields = ["name", "description"]
    ordering = ["name"]
    actions = ["reencrypt_with_newest_key"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account")

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        return columns if request.user.is_superuser else [column for column in columns if column != "account"]

    def get_ordering(self, request):
        by_tree = TreeOrder().asc()
        return [by_tree] if not request.user.is_superuser else ["account__name", by_tree]

    def get_fields(self, request, obj=None):
        fields = ["name", "type", VALUE_FIELD, "description"]
        if obj is not None:
            fields = ["name", "type", "current_value", VALUE_FIELD, "description", "updated_at", "created_at"]
        if request.user.is_superuser:
            fields.insert(0, "account")
        return fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["account", "name", "type", "current_value", "updated_at", "created_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.admin_account = None if request.user.is_superuser else self.account_for_request(request)
        return form

    @admin.display(description="name", ordering=TreeOrder().asc())
    def tree_name(self, obj: Parameter):
        *parents, leaf = obj.name.split("/")
        return format_html(
            '<span class="parameter-tree" data-depth="{}" style="padding-left: {}em">'
            '<span style="color: var(--body-quiet-color)">{}</span><strong>{}</strong></span>',
            len(parents),
            1.5 * len(parents),
            "".join(f"{parent}/" for parent in parents),
            leaf,
        )

    @admin.display(description="value")
    def shown_value(self, obj: Parameter) -> str:
        return MASK if obj.is_sensitive else Truncator(obj.value).chars(80)

    @admin.display(description="current value")
    def current_value(self, obj: Parameter) -> str:
        return f"{MASK} (sensitive: encrypted, never shown)" if obj.is_sensitive else obj.value

    @admin.display(description="description")
    def short_description(self, obj: Parameter) -> str:
        return Truncator(obj.description).chars(80)

    def save_model(self, request, obj, form, change):
        new_value = form.cleaned_data.get(VALUE_FIELD) or None
        if change:
            services.parameter_update(
                parameter=obj, description=form.cleaned_data.get("description") or "", value=new_value
            )
            return
        created = services.parameter_create(
            account=form.cleaned_data.get("account") or self.account_for_request(request),
            name=form.cleaned_data["name"],
            type=form.cleaned_data["type"],
            value=new_value or "",
            description=form.cleaned_data.get("description") or "",
        )
        obj.pk = created.pk
        obj._state.adding = False

    def delete_model(self, request, obj):
        services.parameter_delete(parameter=obj)

    def delete_queryset(self, request, queryset):
        by_account: dict = {}
        for account_id, name in queryset.values_list("account_id", "name"):
            by_account.setdefault(account_id, []).append(name)
        for account_id, names in by_account.items():
            services.parameters_delete(account=account_id, names=names)

    @admin.action(description="Re-encrypt selected sensitive values with the newest key")
    def reencrypt_with_newest_key(self, request, queryset):
        ids = list(queryset.filter(type=Parameter.Type.SENSITIVE).values_list("pk", flat=True))
        try:
            rotated = services.parameter_keys_rotate(parameter_ids=ids)
        except ApiError as exc:
            messages.error(request, f"{exc.code}: {exc.message}")
            return
        messages.success(request, f"Re-encrypted {rotated} sensitive value(s) with the newest key.")
