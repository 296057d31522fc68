"""Operator UI: endpoints (secret shown once, at creation), the event outbox, deliveries with
every attempt, and a "retry now" action for failed deliveries.

A new endpoint's signing secret waits in the user's session between the POST that made it and the
one GET that shows it (redirect after POST, as the accounts app does for client secrets and API
keys): a reload of that page finds nothing and submits nothing."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.admin_scoping import AccountScopedAdmin
from config.api.errors import ApiError
from notifications import outbound, services
from notifications.exceptions import TargetNotAllowed
from notifications.models import Delivery, DeliveryAttempt, EventType, NotificationEndpoint, NotificationEvent

SECRET_ONCE_SESSION_KEY = "notifications.endpoint_secret_once"


class NotificationEndpointForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple, initial=EventType.values
    )

    class Meta:
        model = NotificationEndpoint
        fields = ["account", "url", "description", "event_types", "is_active"]
        widgets = {"url": forms.URLInput(attrs={"size": 80})}

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            outbound.validate_target_url(url, resolve=not settings.OUTBOUND_ALLOW_PRIVATE_TARGETS)
        except TargetNotAllowed as exc:
            raise forms.ValidationError(exc.message, code="TARGET_NOT_ALLOWED")
        return url


@admin.register(NotificationEndpoint)
class NotificationEndpointAdmin(AccountScopedAdmin):
    form = NotificationEndpointForm
    change_form_template = "admin/notifications/notificationendpoint/change_form.html"
    list_display = ["url", "account", "is_active", "event_types", "description", "created_at"]
    list_filter = ["is_active", "account"]
    search_fields = ["url", "description"]
    ordering = ["-created_at"]
    readonly_fields = ["id", "created_at", "updated_at"]

    def get_fields(self, request, obj=None):
        fields = ["url", "description", "event_types", "is_active"]
        if request.user.is_superuser and obj is None:
            fields.insert(0, "account")
        return fields + (["id", "created_at", "updated_at"] if obj else [])

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApiError as exc:
            # A rule the form cannot see (the per-account limit): the save was rolled back.
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.path)

    def save_model(self, request, obj, form, change):
        values = form.cleaned_data
        if change:
            endpoint = NotificationEndpoint.objects.get(pk=obj.pk)
            services.notification_endpoint_update(
                endpoint=endpoint,
                url=values["url"],
                event_types=values["event_types"],
                description=values["description"],
                is_active=values["is_active"],
            )
            return
        account = values.get("account") or self.account_for_request(request)
        endpoint, secret = services.notification_endpoint_create(
            account=account,
            url=values["url"],
            event_types=values["event_types"],
            description=values["description"],
            is_active=values["is_active"],
        )
        obj.pk = endpoint.pk
        request._new_endpoint_secret = (endpoint, secret)

    def get_urls(self):
        # Before the admin's own "<path:object_id>/" routes, which would take "secret/" for an id.
        return [
            path(
                "secret/",
                self.admin_site.admin_view(self.secret_once_view),
                name="notifications_notificationendpoint_secret",
            ),
            path(
                "<path:object_id>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="notifications_notificationendpoint_send_test",
            ),
            *super().get_urls(),
        ]

    def send_test_view(self, request, object_id):
        """POST only (the button on the endpoint's page): a test event to this endpoint, then its
        delivery's page, which shows what the endpoint answered."""
        endpoint = self.get_object(request, object_id)  # the user's own account only
        if endpoint is None:
            raise Http404("No notification endpoint with this id.")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        change_url = reverse("admin:notifications_notificationendpoint_change", args=[endpoint.pk])
        try:
            delivery = services.notification_endpoint_test_send(endpoint=endpoint)
        except ApiError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(change_url)
        self.message_user(
            request, f"Test event sent to {endpoint.url}: its delivery is below.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:notifications_delivery_change", args=[delivery.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.has_change_permission(request, obj):
            context["send_test_url"] = reverse(
                "admin:notifications_notificationendpoint_send_test", args=[obj.pk]
            )
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    def response_add(self, request, obj, post_url_continue=None):
        endpoint, secret = request._new_endpoint_secret
        request.session[SECRET_ONCE_SESSION_KEY] = {"endpoint": str(endpoint.pk), "secret": secret}
        return HttpResponseRedirect(reverse("admin:notifications_notificationendpoint_secret"), status=303)

    def secret_once_view(self, request):
        """The secret the last add made, once: taken out of the session as it is shown."""
        shown = request.session.pop(SECRET_ONCE_SESSION_KEY, None)
        endpoint = self.get_queryset(request).filter(pk=shown["endpoint"]).first() if shown else None
        return TemplateResponse(
            request,
            "admin/notifications/endpoint_secret_once.html",
            {
                **self.admin_site.each_context(request),
                "title": "Notification endpoint created" if endpoint else "Secret already shown",
                "endpoint": endpoint,
                "secret": shown["secret"] if endpoint else "",
                "opts": NotificationEndpoint._meta,
            },
        )

    def delete_model(self, request, obj):
        services.notification_endpoint_delete(endpoint=obj)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            services.notification_endpoint_delete(endpoint=endpoint)


class ReadOnlyAdminMixin:
    """The outbox and its deliveries are written by services only."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


class DeliveryAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "attempted_at", "status_code", "error", "duration_ms"]
    ordering = ["number"]

    def has_change_permission(self, request, obj=None):
        return False


class DeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["endpoint", "status", "attempt_count", "last_status_code", "next_attempt_at"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(NotificationEvent)
class NotificationEventAdmin(ReadOnlyAdminMixin, AccountScopedAdmin):
    list_display = ["id", "event_type", "account", "created_at"]
    list_filter = ["event_type", "account"]
    search_fields = ["id", "event_type"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, AccountScopedAdmin):
    list_display = [
        "id",
        "event_type",
        "endpoint",
        "status",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
        "updated_at",
    ]
    list_filter = ["status", "event__event_type", "account"]
    list_select_related = ["event", "endpoint"]
    search_fields = ["event__id", "endpoint__url", "last_error"]
    ordering = ["-created_at"]
    inlines = [DeliveryAttemptInline]
    actions = ["retry_now"]

    @admin.display(description="event type", ordering="event__event_type")
    def event_type(self, obj):
        return obj.event.event_type

    @admin.action(description="Retry now (failed deliveries)", permissions=["change"])
    def retry_now(self, request, queryset):
        retried = 0
        for delivery in queryset.filter(status=Delivery.Status.FAILED):
            services.delivery_retry(delivery=delivery)
            retried += 1
        skipped = queryset.count() - retried
        self.message_user(
            request,
            f"Retrying {retried} delivery(ies) now."
            + (f" {skipped} not FAILED, left alone." if skipped else ""),
            messages.SUCCESS,
        )
