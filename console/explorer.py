"""The usage explorer (``/admin/usage/``): who used what, when, with the API's own numbers.

An operator picks meter types, customers, a time range (a preset or custom, in the first picked
type's time zone) and a step; the page draws a chart per type, a table of the buckets, the top
customers, and offers the same as CSV. Every figure comes from ``console.selectors.explore_usage``,
which calls the query function ``POST /usage`` calls, with the body shown on the page: the
explorer and the API cannot disagree.
"""

from __future__ import annotations

import csv
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.text import slugify
from django.utils.timezone import now as utc_now

from config.api.errors import ApiError
from console import selectors
from console.charts import bar_chart_svg, format_exact
from console.dashboard import dashboard_account
from metering.models import MeterType

PRESETS = [
    ("24h", "Last 24 hours"),
    ("today", "Today"),
    ("yesterday", "Yesterday"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("this-month", "This month"),
    ("last-month", "Last month"),
    ("custom", "Custom"),
]
STEPS = [("HOUR", "hour"), ("DAY", "day"), ("WEEK", "week"), ("MONTH", "month")]
# The step a preset starts with, so a first look draws a sensible number of buckets.
PRESET_STEP = {"24h": "HOUR", "today": "HOUR", "yesterday": "HOUR"}
LABEL_FORMAT = {"HOUR": "%m-%d %H:00", "DAY": "%m-%d", "WEEK": "%m-%d", "MONTH": "%Y-%m"}
CSV_HEADER = ["meterApiName", "meterType", "bucketStart", "bucketStartInSeconds", "value", "unit"]


def _midnight(day, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, zone)


def _month_start(day, zone: ZoneInfo) -> datetime:
    return _midnight(day.replace(day=1), zone)


def resolve_range(
    preset: str, *, zone: ZoneInfo, now: datetime, start: datetime | None = None, end: datetime | None = None
) -> tuple[datetime, datetime]:
    """A preset (or a custom ``start``/``end`` in ``zone``, naive) as a UTC range in whole seconds.

    Ranges that reach "now" end at the next whole second, so the current second counts. Days and
    months are the zone's own (local midnights, across DST too).
    """
    now_end = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
    today = now.astimezone(zone).date()
    if preset == "custom":
        if start is None or end is None:
            raise ValueError("A custom range needs a start and an end.")
        chosen = (start.replace(tzinfo=zone), end.replace(tzinfo=zone))
    elif preset == "24h":
        chosen = (now_end - timedelta(hours=24), now_end)
    elif preset == "today":
        chosen = (_midnight(today, zone), now_end)
    elif preset == "yesterday":
        chosen = (_midnight(today - timedelta(days=1), zone), _midnight(today, zone))
    elif preset == "7d":
        chosen = (_midnight(today - timedelta(days=6), zone), now_end)
    elif preset == "30d":
        chosen = (_midnight(today - timedelta(days=29), zone), now_end)
    elif preset == "this-month":
        chosen = (_month_start(today, zone), now_end)
    elif preset == "last-month":
        this_month = today.replace(day=1)
        chosen = (_month_start(this_month - timedelta(days=1), zone), _midnight(this_month, zone))
    else:
        raise ValueError(f"Unknown range {preset!r}.")
    return tuple(moment.astimezone(UTC).replace(microsecond=0) for moment in chosen)  # type: ignore[return-value]


class ExplorerForm(forms.Form):
    meter_types = forms.ModelMultipleChoiceField(
        queryset=MeterType.objects.none(), widget=forms.CheckboxSelectMultiple, label="Meter types"
    )
    customers = forms.CharField(
        required=False,
        label="Customers",
        help_text="User ids, separated by commas; empty for every customer.",
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "every customer"}),
    )
    range = forms.ChoiceField(choices=PRESETS, initial="7d", label="Range")
    start = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1})
    )
    end = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1})
    )
    step = forms.ChoiceField(choices=STEPS, initial="DAY", label="Step")

    def __init__(self, *args, account_id, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["meter_types"].queryset = MeterType.objects.filter(account_id=account_id).order_by(
            "name", "id"
        )

    def clean_customers(self) -> list[str]:
        text = self.cleaned_data.get("customers") or ""
        return list(
            dict.fromkeys(part.strip() for part in text.replace("\n", ",").split(",") if part.strip())
        )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("range") == "custom":
            start, end = cleaned.get("start"), cleaned.get("end")
            if start is None or end is None:
                raise forms.ValidationError("A custom range needs a start and an end.")
            if end <= start:
                self.add_error("end", "The end must be after the start.")
        return cleaned


@dataclass(frozen=True)
class Exploration:
    """What the page shows for valid choices."""

    zone: ZoneInfo
    start: datetime
    end: datetime
    step: str
    customers: list[str]
    usage: list[selectors.ExploredUsage]

    @property
    def labels(self) -> list[str]:
        buckets = self.usage[0].buckets if self.usage else ()
        return [bucket.strftime(LABEL_FORMAT[self.step]) for bucket in buckets]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One row per bucket: its start (UTC) and each type's value."""
        if not self.usage:
            return []
        return [
            {"bucket": bucket, "values": [item.values[index] for item in self.usage]}
            for index, bucket in enumerate(self.usage[0].buckets)
        ]


def _naive_local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def _default_data(request: HttpRequest, account_id) -> dict[str, Any]:
    """No choices yet: the account's first meter type (or the one linked to), the last 7 days."""
    data: dict[str, Any] = {"range": "7d", "step": "DAY"}
    wanted = request.GET.getlist("meter_type")
    types = MeterType.objects.filter(account_id=account_id).order_by("name", "id")
    if wanted:
        data["meter_types"] = [
            str(pk) for pk in types.filter(pk__in=_uuids(wanted)).values_list("pk", flat=True)
        ]
    else:
        first = types.first()
        data["meter_types"] = [str(first.pk)] if first else []
    if request.GET.get("customer"):
        data["customers"] = request.GET["customer"]
    return data


def _uuids(values: list[str]) -> list[str]:
    found = []
    for value in values:
        try:
            found.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return found


def explore(form: ExplorerForm, *, account_id, now: datetime) -> Exploration | None:
    """The form's choices run through ``explore_usage``; ``None`` (with the form's errors) when they
    are not valid or /usage refuses them (too many buckets)."""
    if not form.is_valid():
        return None
    data = form.cleaned_data
    meter_types = list(data["meter_types"])
    zone = ZoneInfo(meter_types[0].timezone)
    start, end = resolve_range(
        data["range"], zone=zone, now=now, start=data.get("start"), end=data.get("end")
    )
    if end <= start:
        form.add_error("end", "The end must be after the start.")
        return None
    try:
        usage = selectors.explore_usage(
            account_id,
            meter_types=meter_types,
            start=start,
            end=end,
            interval=data["step"],
            customers=data["customers"] or None,
        )
    except ApiError as error:
        form.add_error("step", error.message)
        return None
    return Exploration(
        zone=zone, start=start, end=end, step=data["step"], customers=data["customers"], usage=usage
    )


def exploration_csv(exploration: Exploration) -> HttpResponse:
    """One row per meter type and bucket, values as /usage answers them."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    names = "-".join(slugify(item.meter_type.api_name) for item in exploration.usage) or "usage"
    response["Content-Disposition"] = (
        f'attachment; filename="usage-{names}-{exploration.start:%Y%m%dT%H%M%SZ}-{exploration.step.lower()}.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(CSV_HEADER)
    for item in exploration.usage:
        for bucket, value in zip(item.buckets, item.values, strict=True):
            writer.writerow(
                [
                    item.meter_type.api_name,
                    item.meter_type.name,
                    bucket.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    int(bucket.timestamp()),
                    format_exact(value),
                    item.meter_type.unit,
                ]
            )
    return response


def _charts(exploration: Exploration) -> list[dict[str, Any]]:
    labels = exploration.labels
    return [
        {
            "usage": item,
            "svg": bar_chart_svg(
                labels=labels,
                values=list(item.values),
                title=f"{item.meter_type.name} · {item.aggregation} per {exploration.step.lower()} (UTC)",
                unit=item.meter_type.unit,
                width=960,
                height=220,
            ),
        }
        for item in exploration.usage
    ]


def usage_explorer_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("metering.view_metertype"):
        raise PermissionDenied
    selection = dashboard_account(request)
    account = selection.account
    now = utc_now()
    exploration = None
    form = None
    if account is not None:
        chosen = "range" in request.GET
        form = ExplorerForm(
            request.GET if chosen else _default_data(request, account.pk), account_id=account.pk
        )
        exploration = explore(form, account_id=account.pk, now=now)
        if exploration is not None and request.GET.get("format") == "csv":
            return exploration_csv(exploration)
        if exploration is not None and not chosen:
            # Show the resolved range in the custom fields, so a switch to "custom" starts from it.
            form = ExplorerForm(
                {
                    **_default_data(request, account.pk),
                    "start": _naive_local(exploration.start, exploration.zone),
                    "end": _naive_local(exploration.end, exploration.zone),
                },
                account_id=account.pk,
            )
            form.is_valid()
    query = request.GET.copy()
    query.pop("format", None)
    if exploration is not None and "range" not in query:
        query.update(
            {
                "range": form.cleaned_data["range"],
                "step": form.cleaned_data["step"],
                "customers": ", ".join(exploration.customers),
            }
        )
        query.setlist("meter_types", [str(item.meter_type.pk) for item in exploration.usage])
        query.pop("meter_type", None)
        query.pop("customer", None)
    csv_query = query.copy()
    if exploration is not None:
        # The CSV is the range shown, to the second, whenever it is downloaded.
        csv_query["range"] = "custom"
        csv_query["start"] = _naive_local(exploration.start, exploration.zone)
        csv_query["end"] = _naive_local(exploration.end, exploration.zone)
    csv_query["format"] = "csv"
    context = {
        **admin.site.each_context(request),
        "title": "Usage explorer",
        "account": account,
        "choices": selection.choices,
        "form": form,
        "exploration": exploration,
        "charts": _charts(exploration) if exploration else [],
        "customers_known": selectors.known_customers(account.pk) if account else [],
        "csv_url": f"?{csv_query.urlencode()}",
        "now": now,
    }
    return TemplateResponse(request, "console/explorer.html", context)
