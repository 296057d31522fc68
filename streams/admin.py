"""Solutions and streams in the admin. Streams change only by import (a page of its own, calling
``services.stream_import``); a stream's page shows its graph, its configuration, its versions (any
two compared on a page of their own, ``streams.diff``) and its last runs, and links to a preview
form that runs sample records through it (``engine_services.stream_preview``, nothing persisted)."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import slugify

from accounts import selectors as account_selectors
from accounts.admin_scoping import AccountScopedAdmin, ReadOnlyAccountScopedAdmin, user_account_id
from config.api.errors import ApiError
from streams import (
    admin_names,  # noqa: F401 - stream names in consumer offsets and periodic tasks
    selectors,
    services,
)
from streams.admin_forms import (
    LATEST,
    StreamCompareForm,
    StreamImportForm,
    StreamPreviewForm,
    graph_health,
    previewed_nodes,
    stream_graph_html,
)
from streams.admin_outputs import health_badge, health_block  # also registers the outbox's admin
from streams.admin_records import json_block  # also registers the engine's records' admins
from streams.diff import stream_config_diff
from streams.engine import selectors as engine_selectors
from streams.engine import services as engine_services
from streams.models import (
    Solution,
    Stream,
    StreamRun,
    StreamVersion,
)


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
    fields = [
        "tag",
        "name",
        "saves",
        "node_count",
        "created_by_label",
        "created_at",
        "export_link",
        "compare_link",
    ]
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

    @admin.display(description="saves (cas)")
    def saves(self, obj: StreamVersion) -> int:
        """The stream's save counter (compare-and-swap) when this version was saved."""
        return obj.cas

    @admin.display(description="saved by")
    def created_by_label(self, obj: StreamVersion) -> str:
        return _actor_label(obj.created_by, obj.account_id)

    @admin.display(description="export")
    def export_link(self, obj: StreamVersion) -> str:
        url = reverse("admin:streams_stream_export", args=[obj.stream_id]) + f"?tag={obj.tag}"
        return format_html('<a href="{}">download JSON</a>', url)

    @admin.display(description="compare")
    def compare_link(self, obj: StreamVersion) -> str:
        url = (
            reverse("admin:streams_stream_compare", args=[obj.stream_id]) + f"?before={obj.pk}&after={LATEST}"
        )
        return format_html('<a href="{}" class="compare-version">with the latest</a>', url)


def _actor_label(actor: dict, account_id) -> str:
    """A person's username; an API caller's Application Access or API key by name (its id if gone)."""
    if not actor:
        return "—"
    kind, identifier = actor.get("type", "?"), actor.get("id", "?")
    name = account_selectors.credential_name(account_id=account_id, kind=kind, identifier=identifier)
    label = {"client": "Application Access", "apiKey": "API key"}.get(kind, kind)
    return f"{name} ({label})" if name else f"{identifier} ({label})"


def _export_response(snapshot: selectors.StreamSnapshot) -> HttpResponse:
    filename = slugify(snapshot.name) or "stream"
    if snapshot.tag:
        filename += f"-{slugify(snapshot.tag)}"
    response = HttpResponse(json.dumps(snapshot.export(), indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{filename}.json"'
    return response


@admin.register(Stream)
class StreamAdmin(AccountScopedAdmin):
    class Media:
        css = {"all": ["streams/streams.css"]}

    list_display = [
        "name",
        "solution",
        "processing_type",
        "health",
        "node_count",
        "saves",
        "tag",
        "updated_at",
    ]
    # RelatedOnly: the filter lists only solutions of streams the user can see (tenancy).
    list_filter = ["processing_type", ("solution", admin.RelatedOnlyFieldListFilter), "account"]
    search_fields = ["name", "id", "solution__name"]
    ordering = ["solution__name", "name"]
    list_select_related = ["solution"]
    inlines = [StreamVersionInline]
    actions = ["export_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "id",
                    "solution",
                    "processing_type",
                    "schema_version",
                    "description",
                    "tag",
                    "cas_explained",
                    "created_by_label",
                    "created_at",
                    "updated_by_label",
                    "updated_at",
                ]
            },
        ),
        ("Health", {"fields": ["health_details"]}),
        ("Graph", {"fields": ["graph"]}),
        ("Runs", {"fields": ["recent_runs"]}),
        ("Meter inspector", {"fields": ["meter_inspector"]}),
        ("Configuration", {"fields": ["configuration"], "classes": ["collapse"]}),
    ]
    readonly_fields = [
        "name",
        "id",
        "solution",
        "processing_type",
        "schema_version",
        "description",
        "tag",
        "cas_explained",
        "created_by_label",
        "created_at",
        "updated_by_label",
        "updated_at",
        "graph",
        "configuration",
        "recent_runs",
        "meter_inspector",
        "health_details",
    ]

    # Streams change only through an import (validated, versioned): the page is read-only.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def can_import(self, request) -> bool:
        return request.user.has_perm("streams.change_stream") and request.user.has_perm("streams.add_stream")

    def get_changelist_instance(self, request):
        # The health of the whole page in a fixed number of queries, not a few per row.
        changelist = super().get_changelist_instance(request)
        health = engine_selectors.streams_health(streams=list(changelist.result_list))
        for stream in changelist.result_list:
            stream.health_computed = health[stream.pk]
        return changelist

    @admin.display(description="health")
    def health(self, obj: Stream) -> str:
        computed = getattr(obj, "health_computed", None)
        return health_badge(computed or engine_selectors.stream_health(stream=obj))

    @admin.display(description="health")
    def health_details(self, obj: Stream) -> str:
        return health_block(engine_selectors.stream_health(stream=obj), obj)

    @admin.display(description="nodes")
    def node_count(self, obj: Stream) -> int:
        return len(obj.nodes)

    @admin.display(description="saves (cas)", ordering="cas")
    def saves(self, obj: Stream) -> int:
        """The save counter (compare-and-swap) in a list column: the header says what it counts."""
        return obj.cas

    @admin.display(description="saves (cas)", ordering="cas")
    def cas_explained(self, obj: Stream) -> str:
        return f"{obj.cas} · the stream's save counter (compare-and-swap): each saved import adds 1"

    @admin.display(description="created by")
    def created_by_label(self, obj: Stream) -> str:
        return _actor_label(obj.created_by, obj.account_id)

    @admin.display(description="updated by")
    def updated_by_label(self, obj: Stream) -> str:
        return _actor_label(obj.updated_by, obj.account_id)

    @admin.display(description="graph")
    def graph(self, obj: Stream) -> str:
        return stream_graph_html(obj.nodes, obj.edges, health=graph_health(obj))

    @admin.display(description="recent runs")
    def recent_runs(self, obj: Stream) -> str:
        return render_to_string(
            "admin/streams/includes/recent_runs.html",
            {"stream": obj, "runs": selectors.stream_recent_runs(stream=obj)},
        )

    @admin.display(description="meters counted by its meter processors")
    def meter_inspector(self, obj: Stream) -> str:
        """Per meter node: the meters of its meterKey with their current value (first 50)."""
        return render_to_string(
            "admin/streams/includes/meter_inspector.html",
            {"meter_nodes": selectors.stream_meter_nodes(stream=obj)},
        )

    @admin.display(description="configuration (export)")
    def configuration(self, obj: Stream) -> str:
        return json_block(selectors.stream_snapshot(obj).export())

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
            path(
                "<uuid:object_id>/export/",
                self.admin_site.admin_view(self.export_view),
                name="streams_stream_export",
            ),
            path(
                "<uuid:object_id>/compare/",
                self.admin_site.admin_view(self.compare_view),
                name="streams_stream_compare",
            ),
            path(
                "<uuid:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="streams_stream_preview",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_import": self.can_import(request)}
        return super().changelist_view(request, extra_context)

    def _viewable_stream(self, request, object_id) -> Stream:
        """The stream if it is the user's account's and they may view it; else 404 (tenancy)."""
        stream = self.get_queryset(request).filter(pk=object_id).first()
        if stream is None or not self.has_view_permission(request, stream):
            raise Http404("Stream not found.")
        return stream

    def _page(self, request, stream: Stream, title: str, template: str, **context) -> TemplateResponse:
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "title": title,
                "subtitle": stream.name,
                "opts": self.model._meta,
                "original": stream,
                **context,
            },
        )

    def compare_view(self, request, object_id):
        """Two configurations of the stream side by side: what was added, removed and changed."""
        stream = self._viewable_stream(request, object_id)
        versions = list(selectors.stream_versions(stream=stream))
        form = StreamCompareForm(
            request.GET if "before" in request.GET else StreamCompareForm.default(versions),
            stream=stream,
            versions=versions,
        )
        diff = None
        if form.is_valid():
            before, after = form.cleaned_data["before"], form.cleaned_data["after"]
            diff = stream_config_diff(
                form.snapshot(before).export(),
                form.snapshot(after).export(),
                before_label=form.label(before),
                after_label=form.label(after),
            )
        return self._page(
            request,
            stream,
            "Compare versions",
            "admin/streams/stream/compare.html",
            form=form,
            diff=diff,
            versions=versions,
        )

    def preview_view(self, request, object_id):
        """Run sample records through the stream and show each node's output and rejections.
        The same service as ``POST /streams/{id}/preview``: nothing is persisted."""
        stream = self._viewable_stream(request, object_id)
        versions = list(selectors.stream_versions(stream=stream))
        form = StreamPreviewForm(request.POST or None, stream=stream, versions=versions)
        result, previewed, label = None, selectors.stream_snapshot(stream), "Latest configuration"
        if request.method == "POST" and form.is_valid():
            tag = form.cleaned_data["version"]
            try:
                result = engine_services.stream_preview(
                    stream=stream, records=form.cleaned_data["records"], tag=tag
                )
                previewed = selectors.stream_snapshot_for_tag(stream, tag)
            except ApiError as exc:
                form.add_error(None, exc.message)
            label = f"Version {tag}" if tag else label
        return self._page(
            request,
            stream,
            "Preview",
            "admin/streams/stream/preview.html",
            form=form,
            result=result,
            nodes=previewed_nodes(result) if result else [],
            previewed=previewed,
            previewed_label=label,
            graph=stream_graph_html(previewed.nodes, previewed.edges),
        )

    def export_view(self, request, object_id):
        stream = self._viewable_stream(request, object_id)
        try:
            snapshot = selectors.stream_snapshot_for_tag(stream, request.GET.get("tag"))
        except ApiError:
            raise Http404("No version with this tag.")
        return _export_response(snapshot)

    def import_view(self, request):
        if not self.can_import(request):
            raise PermissionDenied
        account_id = user_account_id(request)
        solutions = (
            Solution.objects.all() if account_id is None else Solution.objects.filter(account_id=account_id)
        )
        form = StreamImportForm(request.POST or None, request.FILES or None, solutions=solutions)
        problems: list[dict] = []
        if request.method == "POST" and form.is_valid():
            solution = form.cleaned_data["solution"]
            try:
                result = services.stream_import(
                    account=solution.account,
                    solution_id=solution.pk,
                    stream_config=form.cleaned_data["stream_config"],
                    on_name_conflict=form.cleaned_data["on_name_conflict"] or None,
                    allow_node_deletion=form.cleaned_data["allow_node_deletion"],
                    actor=services.actor_for_user(request.user),
                )
            except ApiError as exc:
                form.add_error(None, exc.message)
                problems = exc.details
            else:
                messages.success(
                    request,
                    f"Stream '{result.stream.name}' {result.action.value}"
                    + (f", tagged {result.tag}." if result.tag else "."),
                )
                return HttpResponseRedirect(reverse("admin:streams_stream_change", args=[result.stream.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import stream",
            "opts": self.model._meta,
            "form": form,
            "problems": problems,
        }
        return TemplateResponse(request, "admin/streams/stream/import.html", context)


# --- The stream engine's runs (its stores, sessions, inspected records and flush deliveries: admin_records)


class RunErrorsFilter(admin.SimpleListFilter):
    """Runs with errors: failed, or succeeded with rejected records (the dashboard's panel links here)."""

    title = "errors"
    parameter_name = "errors"

    def lookups(self, request, model_admin):
        return [("any", "failed or rejected records"), ("rejected", "rejected records")]

    def queryset(self, request, queryset):
        if self.value() == "any":
            return queryset.filter(Q(status=StreamRun.Status.FAILED) | Q(records_rejected__gt=0))
        if self.value() == "rejected":
            return queryset.filter(records_rejected__gt=0)
        return queryset


@admin.register(StreamRun)
class StreamRunAdmin(ReadOnlyAccountScopedAdmin):
    list_display = [
        "started_at",
        "stream",
        "trigger",
        "status",
        "records_in",
        "records_out",
        "records_rejected",
        "duration",
    ]
    list_filter = [
        "status",
        RunErrorsFilter,
        "trigger",
        ("stream", admin.RelatedOnlyFieldListFilter),
        "account",
    ]
    search_fields = ["id", "stream__name", "error"]
    ordering = ["-started_at"]
    list_select_related = ["stream"]
    fields = [
        "id",
        "stream",
        "stream_cas",
        "trigger",
        "status",
        "started_at",
        "finished_at",
        "duration",
        "records_in",
        "records_out",
        "records_rejected",
        "per_node_counts",
        "error",
        "source_first_sequence",
        "source_last_sequence",
        "rejections_kept",
    ]
    readonly_fields = fields

    @admin.display(description="duration (s)")
    def duration(self, obj: StreamRun) -> str:
        return "—" if obj.duration_seconds is None else f"{obj.duration_seconds:.3f}"

    @admin.display(description="records per node")
    def per_node_counts(self, obj: StreamRun) -> str:
        names = {node.get("id"): node.get("name") or node.get("id") for node in obj.stream.nodes}
        rows = [
            {
                "node_id": node_id,
                "name": names.get(node_id, "(removed)"),
                "in": counts.get("in", 0),
                "out": counts.get("out", 0),
                "rejected": counts.get("rejected", 0),
            }
            for node_id, counts in obj.node_counts.items()
        ]
        return render_to_string("admin/streams/includes/node_counts.html", {"rows": rows})

    @admin.display(description=f"rejections (first {StreamRun.REJECTIONS_KEPT})")
    def rejections_kept(self, obj: StreamRun) -> str:
        return json_block(obj.rejections) if obj.rejections else "—"
