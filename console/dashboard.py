"""The admin index as a dashboard: which account it shows, and the built-in panels.

Panels register themselves on import (``ConsoleConfig.ready``). Each reads through
``console.selectors`` for the one account the dashboard shows: a staff user's own account, or for
a superuser the account picked in the selector (``?account=<id>``; by default the account the
superuser is linked to, else the first by name).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from accounts.models import Account
from accounts.selectors import account_for_user
from console import selectors
from console.charts import Series, bar_chart_svg, format_exact, line_chart_svg
from console.panels import PanelRequest, register_panel

# A superuser's account selector lists at most this many accounts (by name); any other account
# is still reachable with ?account=<id>.
ACCOUNT_CHOICES_SHOWN = 500
# Rows a list panel shows before "all N …" links to the full change list.
PANEL_ROWS = 10
# Usage charts drawn at most (types with usage first, then by name); the rest are counted.
USAGE_CHARTS_SHOWN = 12


@dataclass(frozen=True)
class DashboardAccount:
    """The account the dashboard shows (``None``: none to show) and, for superusers, the choices."""

    account: Account | None
    choices: list[Account] = field(default_factory=list)


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def dashboard_account(request: HttpRequest) -> DashboardAccount:
    user = request.user
    if not user.is_superuser:
        # Staff see their own account only; ?account= is ignored for them.
        return DashboardAccount(account=account_for_user(user))
    choices = list(Account.objects.order_by("name", "id")[:ACCOUNT_CHOICES_SHOWN])
    wanted = _as_uuid(request.GET.get("account", ""))
    account = Account.objects.filter(pk=wanted).first() if wanted else None
    if account is None:
        account = account_for_user(user) or (choices[0] if choices else None)
    if account is not None and account not in choices:
        choices.append(account)
    return DashboardAccount(account=account, choices=choices)


# --- Built-in panels ------------------------------------------------------------------------


def _first_rows(key: str, rows: Any) -> dict[str, Any]:
    """A list panel's context: its first ``PANEL_ROWS`` rows under ``key`` and how many in all
    (the "all N …" link to the full change list)."""
    return {key: list(rows[:PANEL_ROWS]), "total": rows.count()}


def _usage_summary(usage: selectors.MeterTypeDailyUsage) -> str:
    """The window's figure in the type's own terms: a total for SUM/INCREMENT, the peak for MAX…"""
    known = [value for value in usage.values if value is not None]
    if not known:
        return "no usage recorded"
    if usage.aggregation == "MAX":
        return f"peak {format_exact(max(known))} {usage.unit}"
    if usage.aggregation == "MIN":
        return f"lowest {format_exact(min(known))} {usage.unit}"
    return f"total {format_exact(sum(known))} {usage.unit}"


@dataclass(frozen=True)
class UsageWindow:
    """A choice of the usage panel (``?usage=<key>``): how far back, and one bar per hour or day."""

    key: str
    label: str
    step: str  # "HOUR" (UTC hours) or "DAY" (days in each type's timezone)
    count: int


def usage_windows() -> list[UsageWindow]:
    """The last 24 hours per hour (day one: a day per bar would be one bar), then days."""
    days = sorted({7, settings.CONSOLE_USAGE_DAYS, 90})
    return [UsageWindow("24h", "24 hours", "HOUR", 24)] + [
        UsageWindow(f"{count}d", f"{count} days", "DAY", count) for count in days
    ]


def _chosen_window(request: HttpRequest) -> UsageWindow:
    windows = {window.key: window for window in usage_windows()}
    return windows.get(request.GET.get("usage", ""), windows[f"{settings.CONSOLE_USAGE_DAYS}d"])


@register_panel(
    key="usage",
    title="Usage per meter type",
    template="console/panels/usage.html",
    permissions=("metering.view_metertype",),
    order=10,
    wide=True,
)
def usage_panel(panel: PanelRequest) -> dict[str, Any]:
    window = _chosen_window(panel.request)
    if window.step == "HOUR":
        usage = selectors.usage_by_meter_type_per_hour(panel.account.pk, window.count, now=panel.now)
        label_format = "%H:00"
    else:
        usage = selectors.usage_by_meter_type_per_day(panel.account.pk, window.count, now=panel.now)
        label_format = "%m-%d"
    ordered = sorted(usage, key=lambda item: not item.has_usage)  # stable: by name within each group
    charts = [
        {
            "usage": item,
            "summary": _usage_summary(item),
            "svg": bar_chart_svg(
                labels=[bucket.strftime(label_format) for bucket in item.days],
                values=item.values,
                title=item.name,
                unit=item.unit,
                width=290,
                height=150,
            ),
        }
        for item in ordered[:USAGE_CHARTS_SHOWN]
    ]
    # Superusers keep the account they picked when they change the window.
    account = panel.request.GET.get("account", "")
    return {
        "charts": charts,
        "window": window,
        "windows": usage_windows(),
        "account_query": f"&account={account}" if account and panel.request.user.is_superuser else "",
        "more": max(0, len(usage) - USAGE_CHARTS_SHOWN),
        "meter_type_count": len(usage),
    }


@register_panel(
    key="meter_types",
    title="Meter types",
    template="console/panels/meter_types.html",
    permissions=("metering.view_metertype",),
    order=20,
)
def meter_types_panel(panel: PanelRequest) -> dict[str, Any]:
    return _first_rows("meter_types", selectors.meter_types_with_counts(panel.account.pk))


@register_panel(
    key="near_capacity",
    title="Meters near or over capacity",
    template="console/panels/near_capacity.html",
    permissions=("metering.view_meter",),
    order=30,
)
def near_capacity_panel(panel: PanelRequest) -> dict[str, Any]:
    meters = _first_rows("meters", selectors.meters_near_capacity(panel.account.pk))
    return meters | {"percent": selectors.near_capacity_percent()}


@register_panel(
    key="threshold_notifications",
    title="Recent threshold crossings",
    template="console/panels/threshold_notifications.html",
    permissions=("notifications.view_notificationevent",),
    order=40,
    wide=True,
)
def threshold_notifications_panel(panel: PanelRequest) -> dict[str, Any]:
    return {
        "crossings": selectors.recent_threshold_crossings(panel.account.pk, limit=PANEL_ROWS),
        "total": selectors.threshold_crossings(panel.account.pk).count(),
    }


@register_panel(
    key="failed_deliveries",
    title="Failed webhook deliveries",
    template="console/panels/failed_deliveries.html",
    permissions=("notifications.view_delivery",),
    order=50,
    wide=True,
)
def failed_deliveries_panel(panel: PanelRequest) -> dict[str, Any]:
    return _first_rows("deliveries", selectors.failed_deliveries(panel.account.pk))


@register_panel(
    key="collectors",
    title="Collectors with their intake rate",
    template="console/panels/collectors.html",
    permissions=("collection.view_collector",),
    order=55,
    wide=True,
)
def collectors_panel(panel: PanelRequest) -> dict[str, Any]:
    minutes = settings.CONSOLE_INTAKE_MINUTES
    intake = selectors.collectors_with_intake(panel.account.pk, minutes=minutes, now=panel.now)
    chart = None
    if any(item.total_batches for item in intake):
        chart = line_chart_svg(
            labels=[minute.strftime("%H:%M") for minute in intake[0].minutes],
            series=[Series(item.collector.name, item.records) for item in intake],
            title="Records per minute (UTC)",
            unit="records",
            width=880,
            height=170,
        )
    return {"intake": intake, "minutes": minutes, "chart": chart}


@register_panel(
    key="streams",
    title="Streams",
    template="console/panels/streams.html",
    permissions=("streams.view_stream",),
    order=60,
)
def streams_panel(panel: PanelRequest) -> dict[str, Any]:
    return {
        "counts": selectors.stream_counts(panel.account.pk),
        "recent": list(selectors.recently_updated_streams(panel.account.pk)[:5]),
    }


@register_panel(
    key="data_corrections",
    title="Data-correction backlog",
    template="console/panels/data_corrections.html",
    permissions=("metering.view_datacorrection",),
    order=62,
)
def data_corrections_panel(panel: PanelRequest) -> dict[str, Any]:
    return {"backlog": selectors.correction_backlog(panel.account.pk)}


@register_panel(
    key="stream_runs",
    title="Stream runs with errors",
    template="console/panels/stream_runs.html",
    permissions=("streams.view_streamrun",),
    order=70,
    wide=True,
)
def stream_runs_panel(panel: PanelRequest) -> dict[str, Any]:
    return {
        "runs": list(selectors.stream_runs_with_errors(panel.account.pk)[:PANEL_ROWS]),
        "counts": selectors.stream_run_error_counts(panel.account.pk, now=panel.now),
    }


@register_panel(
    key="stream_health",
    title="Stream health",
    template="console/panels/stream_health.html",
    permissions=("streams.view_stream",),
    order=65,
    wide=True,
)
def stream_health_panel(panel: PanelRequest) -> dict[str, Any]:
    # The selector the stream list, the stream page and GET /streams/{id}/health share; the least
    # healthy streams first, the identical repeated errors collapsed with a count.
    from streams.engine.selectors import account_streams_health

    rows = account_streams_health(account_id=panel.account.pk, now=panel.now)
    return {"rows": rows[:PANEL_ROWS], "total": len(rows)}
