"""The stream admin's forms (import, compare two versions, preview sample records), how a
preview's nodes are shown, and the graph with its node colours. The views that use them are in
``streams/admin.py``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django import forms
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from streams import selectors
from streams.engine import selectors as engine_selectors
from streams.engine import services as engine_services
from streams.engine.collection_seam import batch_records
from streams.graph import stream_graph_svg
from streams.models import Solution, Stream, StreamVersion

MAX_UPLOAD_BYTES = 1024 * 1024
# The latest (autosaved) configuration in the version comparison's choices (versions are named by
# id, so no tag can clash with it).
LATEST = "latest"
# Records and rejections shown per node on the preview page (the counts are always complete).
PREVIEW_RECORDS_SHOWN = 20


class StreamImportForm(forms.Form):
    solution = forms.ModelChoiceField(queryset=Solution.objects.none())
    file = forms.FileField(required=False, help_text="A stream configuration (JSON), e.g. from Export.")
    config_text = forms.CharField(
        required=False, label="or paste the JSON", widget=forms.Textarea(attrs={"rows": 12, "cols": 100})
    )
    on_name_conflict = forms.ChoiceField(
        required=False,
        label="When the name exists",
        choices=[
            ("", "refuse the import"),
            ("overwrite", "overwrite the stream"),
            ("create-new", "create a copy named '<name> (Copy)'"),
            ("skip", "skip (keep the existing stream)"),
        ],
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


def _version_choices(
    stream: Stream, versions: list[StreamVersion], *, latest_value: str
) -> list[tuple[str, str]]:
    return [(latest_value, f"latest configuration (cas {stream.cas})")] + [
        (str(version.pk), f"{version.tag} (cas {version.cas}, saved {version.created_at:%Y-%m-%d %H:%M} UTC)")
        for version in versions
    ]


class StreamCompareForm(forms.Form):
    """Two configurations of one stream: its tagged versions and the latest configuration."""

    before = forms.ChoiceField(label="Compare")
    after = forms.ChoiceField(label="with")

    def __init__(self, *args, stream: Stream, versions: list[StreamVersion], **kwargs):
        super().__init__(*args, **kwargs)
        choices = _version_choices(stream, versions, latest_value=LATEST)
        self.fields["before"].choices = self.fields["after"].choices = choices
        self.versions = {str(version.pk): version for version in versions}
        self.stream = stream

    @staticmethod
    def default(versions: list[StreamVersion]) -> dict[str, str]:
        """The two newest versions; with one version, it and the latest configuration."""
        if len(versions) >= 2:
            return {"before": str(versions[1].pk), "after": str(versions[0].pk)}
        return {"before": str(versions[0].pk) if versions else LATEST, "after": LATEST}

    def snapshot(self, choice: str) -> selectors.StreamSnapshot:
        return selectors.stream_snapshot(self.stream, self.versions.get(choice))

    def label(self, choice: str) -> str:
        version = self.versions.get(choice)
        return f"{version.tag} (cas {version.cas})" if version else f"latest (cas {self.stream.cas})"


class StreamPreviewForm(forms.Form):
    """Sample records for a preview: a JSON array of records, one JSON object, or one per line."""

    records = forms.CharField(
        label="Sample records",
        widget=forms.Textarea(attrs={"rows": 12, "cols": 100, "spellcheck": "false"}),
        help_text="A JSON array of records, one JSON object, or one JSON object per line (as a collector "
        f"receives them); at most {engine_services.PREVIEW_MAX_RECORDS}.",
    )
    version = forms.ChoiceField(label="Configuration", required=False)

    def __init__(self, *args, stream: Stream, versions: list[StreamVersion], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = _version_choices(stream, versions, latest_value="")
        self.tags = {str(version.pk): version.tag for version in versions}

    def clean_records(self) -> list:
        text = self.cleaned_data["records"].strip()
        try:
            data = json.loads(text)
        except ValueError:
            data = text  # one record per line; a line that is not JSON is rejected by the input node
        records = batch_records(data)
        if not 1 <= len(records) <= engine_services.PREVIEW_MAX_RECORDS:
            raise forms.ValidationError(f"Give 1 to {engine_services.PREVIEW_MAX_RECORDS} records.")
        return records

    def clean_version(self) -> str | None:
        return self.tags.get(self.cleaned_data.get("version") or "")


@dataclass(frozen=True)
class PreviewedNode:
    """One node's part of a preview, as the page shows it."""

    id: str
    name: str
    type: str
    counts: dict[str, int]
    note: str
    records: list[str]
    more_records: int
    rejections: list[tuple[str, str]]
    more_rejections: int


def previewed_nodes(result) -> list[PreviewedNode]:
    def pretty(record) -> str:
        return json.dumps(record, indent=2, ensure_ascii=False, default=str)

    return [
        PreviewedNode(
            id=node.node.id,
            name=node.node.name or node.node.id,
            type=node.node.type,
            counts=node.counts(),
            note=node.note,
            records=[pretty(record) for record in node.out[:PREVIEW_RECORDS_SHOWN]],
            more_records=max(0, len(node.out) - PREVIEW_RECORDS_SHOWN),
            rejections=[
                (pretty(rejection.record), rejection.reason)
                for rejection in node.rejections[:PREVIEW_RECORDS_SHOWN]
            ],
            more_rejections=max(0, len(node.rejections) - PREVIEW_RECORDS_SHOWN),
        )
        for node in result.nodes
    ]


def stream_graph_html(nodes, edges, *, health: dict[str, str] | None = None) -> str:
    """The graph drawn from escaped labels only (streams.graph), in its fit / actual-size frame."""
    svg = mark_safe(stream_graph_svg(nodes, edges, node_health=health))  # noqa: S308 - escaped in streams.graph
    return render_to_string("admin/streams/includes/graph.html", {"svg": svg, "health": health})


# Node types where a stream's health shows: its inputs when it lags, its outputs when they fail.
INPUT_TYPES, OUTPUT_TYPES = {"onlineCollector"}, {"httpForwarder"}


def graph_health(stream: Stream) -> dict[str, str]:
    """Each node's colour: its counts in the last run (``streams.selectors.stream_node_health``),
    with the stream's health (``streams.engine.selectors.stream_health``) on the nodes it concerns:
    outputs whose deliveries fail, inputs that lag behind their collector."""
    health = selectors.stream_node_health(stream=stream)
    state = engine_selectors.stream_health(stream=stream).state
    for node in stream.nodes:
        node_id, node_type = str(node.get("id")), node.get("type")
        if state == "output failing" and node_type in OUTPUT_TYPES:
            health[node_id] = "failing"
        elif state == "lagging" and node_type in INPUT_TYPES and health.get(node_id) != "failing":
            health[node_id] = "warning"
    return health
