"""Solutions and streams in the admin. Streams change only by import (a page of its own, calling
``services.stream_import``); a stream's page shows its graph, its configuration and its versions."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.text import slugify

from accounts.admin_scoping import AccountScopedAdmin, user_account_id
from config.api.errors import ApiError
from streams import selectors, services
from streams.graph import stream_graph_svg
from streams.models import Solution, Stream, StreamVersion

MAX_UPLOAD_BYTES = 1024 * 1024


@admin.register(Solution)
class SolutionAdmin(AccountScopedAdmin):
    list_display = ["name", "id", "stream_count", "created_at"]
    list_filter = ["account"]
    search_fields = ["name", "id"]
    ordering = ["name"]
    readonly_fields = ["id", "created_at"]

    def get_fields(self, request, obj=None):
        fields = ["name"]
        if request.user.is_superuser and obj is None:
            fields.insert(0, "account")
        return fields + (["id", "created_at"] if obj else [])

    @admin.display(description="streams")
    def stream_count(self, obj: Solution) -> int:
        return obj.streams.count()

    def save_model(self, request, obj, form, change):
        if change:
            services.solution_rename(solution=obj, name=form.cleaned_data["name"])
            return
        account = form.cleaned_data.get("account") or self.account_for_request(request)
        created = services.solution_create(account=account, name=form.cleaned_data["name"])
        obj.pk = created.pk

    def delete_model(self, request, obj):
        services.solution_delete(solution=obj)

    def delete_queryset(self, request, queryset):
        for solution in queryset:
            services.solution_delete(solution=solution)


class StreamVersionInline(admin.TabularInline):
    model = StreamVersion
    extra = 0
    can_delete = False
    fields = ["tag", "name", "cas", "node_count", "created_by_label", "created_at", "export_link"]
    readonly_fields = fields
    ordering = ["-created_at"]
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="nodes")
    def node_count(self, obj: StreamVersion) -> int:
        return len(obj.nodes)

    @admin.display(description="saved by")
    def created_by_label(self, obj: StreamVersion) -> str:
        return _actor_label(obj.created_by)

    @admin.display(description="export")
    def export_link(self, obj: StreamVersion) -> str:
        url = reverse("admin:streams_stream_export", args=[obj.stream_id]) + f"?tag={obj.tag}"
        return format_html('<a href="{}">download JSON</a>', url)


def _actor_label(actor: dict) -> str:
    return f"{actor.get('id', '?')} ({actor.get('type', '?')})" if actor else "—"


def _export_response(snapshot: selectors.StreamSnapshot) -> HttpResponse:
    filename = slugify(snapshot.name) or "stream"
    if snapshot.tag:
        filename += f"-{slugify(snapshot.tag)}"
    response = HttpResponse(json.dumps(snapshot.export(), indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{filename}.json"'
    return response


class StreamImportForm(forms.Form):
    solution = forms.ModelChoiceField(queryset=Solution.objects.none())
    file = forms.FileField(required=False, help_text="A stream configuration (JSON), e.g. from Export.")
    config_text = forms.CharField(required=False, label="or paste the JSON",
                                  widget=forms.Textarea(attrs={"rows": 12, "cols": 100}))
    on_name_conflict = forms.ChoiceField(
        required=False, label="When the name exists",
        choices=[("", "refuse the import"), ("overwrite", "overwrite the stream"),
                 ("create-new", "create a copy named '<name> (Copy)'"), ("skip", "skip (keep the existing stream)")],
    )
    allow_node_deletion = forms.BooleanField(required=False, help_text="Let an overwrite remove nodes.")

    def __init__(self, *args, solutions=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["solution"].queryset = solutions

    def clean(self):
        cleaned = super().clean()
        upload, text = cleaned.get("file"), (cleaned.get("config_text") or "").strip()
        if upload is not None:
            if upload.size > MAX_UPLOAD_BYTES:
                raise forms.ValidationError("The file is larger than 1 MiB.")
            text = upload.read().decode("utf-8", errors="replace")
        if not text:
            raise forms.ValidationError("Upload a JSON file or paste the configuration.")
        try:
            cleaned["stream_config"] = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}")
        return cleaned


@admin.register(Stream)
class StreamAdmin(AccountScopedAdmin):
    list_display = ["name", "solution", "processing_type", "node_count", "cas", "tag", "updated_at"]
    # RelatedOnly: the filter lists only solutions of streams the user can see (tenancy).
    list_filter = ["processing_type", ("solution", admin.RelatedOnlyFieldListFilter), "account"]
    search_fields = ["name", "id", "solution__name"]
    ordering = ["solution__name", "name"]
    list_select_related = ["solution"]
    inlines = [StreamVersionInline]
    actions = ["export_selected"]
    fieldsets = [
        (None, {"fields": ["name", "id", "solution", "processing_type", "schema_version", "description", "tag",
                           "cas", "created_by_label", "created_at", "updated_by_label", "updated_at"]}),
        ("Graph", {"fields": ["graph"]}),
        ("Configuration", {"fields": ["configuration"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["name", "id", "solution", "processing_type", "schema_version", "description", "tag", "cas",
                       "created_by_label", "created_at", "updated_by_label", "updated_at", "graph", "configuration"]

    # Streams change only through an import (validated, versioned): the page is read-only.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def can_import(self, request) -> bool:
        return request.user.has_perm("streams.change_stream") and request.user.has_perm("streams.add_stream")

    @admin.display(description="nodes")
    def node_count(self, obj: Stream) -> int:
        return len(obj.nodes)

    @admin.display(description="created by")
    def created_by_label(self, obj: Stream) -> str:
        return _actor_label(obj.created_by)

    @admin.display(description="updated by")
    def updated_by_label(self, obj: Stream) -> str:
        return _actor_label(obj.updated_by)

    @admin.display(description="graph")
    def graph(self, obj: Stream) -> str:
        # Built server-side from escaped labels only (streams.graph), so it is safe to inline.
        return format_html('<div class="stream-graph-scroll" style="overflow-x: auto; max-width: 100%;">{}</div>',
                           mark_safe(stream_graph_svg(obj.nodes, obj.edges)))

    @admin.display(description="configuration (export)")
    def configuration(self, obj: Stream) -> str:
        return format_html("<pre>{}</pre>", json.dumps(selectors.stream_snapshot(obj).export(), indent=2))

    def delete_model(self, request, obj):
        services.stream_delete(stream=obj)

    def delete_queryset(self, request, queryset):
        for stream in queryset:
            services.stream_delete(stream=stream)

    @admin.action(description="Export (download JSON)", permissions=["view"])
    def export_selected(self, request, queryset):
        if queryset.count() != 1:
            messages.error(request, "Select exactly one stream to export.")
            return None
        return _export_response(selectors.stream_snapshot(queryset.get()))

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="streams_stream_import"),
            path("<uuid:object_id>/export/", self.admin_site.admin_view(self.export_view),
                 name="streams_stream_export"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_import": self.can_import(request)}
        return super().changelist_view(request, extra_context)

    def export_view(self, request, object_id):
        stream = self.get_queryset(request).filter(pk=object_id).first()
        if stream is None or not self.has_view_permission(request, stream):
            raise Http404("Stream not found.")
        try:
            snapshot = selectors.stream_snapshot_for_tag(stream, request.GET.get("tag"))
        except ApiError:
            raise Http404("No version with this tag.")
        return _export_response(snapshot)

    def import_view(self, request):
        if not self.can_import(request):
            raise PermissionDenied
        account_id = user_account_id(request)
        solutions = Solution.objects.all() if account_id is None else Solution.objects.filter(account_id=account_id)
        form = StreamImportForm(request.POST or None, request.FILES or None, solutions=solutions)
        problems: list[dict] = []
        if request.method == "POST" and form.is_valid():
            solution = form.cleaned_data["solution"]
            try:
                result = services.stream_import(
                    account=solution.account, solution_id=solution.pk,
                    stream_config=form.cleaned_data["stream_config"],
                    on_name_conflict=form.cleaned_data["on_name_conflict"] or None,
                    allow_node_deletion=form.cleaned_data["allow_node_deletion"],
                    actor=services.actor_for_user(request.user),
                )
            except ApiError as exc:
                form.add_error(None, exc.message)
                problems = exc.details
            else:
                messages.success(request, f"Stream '{result.stream.name}' {result.action.value}"
                                          + (f", tagged {result.tag}." if result.tag else "."))
                return HttpResponseRedirect(reverse("admin:streams_stream_change", args=[result.stream.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import stream",
            "opts": self.model._meta,
            "form": form,
            "problems": problems,
        }
        return TemplateResponse(request, "admin/streams/stream/import.html", context)
