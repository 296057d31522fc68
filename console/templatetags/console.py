"""``{% console_dashboard %}`` (the admin index's dashboard) and number formatting for panels."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import template
from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import SafeString
from django.utils.timezone import now as utc_now

from console import capacity, selectors
from console.capacity import CapacityShare
from console.charts import bar_chart_svg, format_exact
from console.dashboard import dashboard_account
from console.panels import render_panels
from metering import aggregation

register = template.Library()


@register.simple_tag(takes_context=True)
def console_dashboard(context) -> SafeString:
    request = context["request"]
    selection = dashboard_account(request)
    panels = []
    if selection.account is not None:
        panels = render_panels(request=request, account=selection.account, now=utc_now())
    return render_to_string(
        "console/dashboard.html",
        {
            "account": selection.account,
            "choices": selection.choices,
            "panels": panels,
        },
        request=request,
    )


@register.filter
def number(value: Decimal | int | float | None) -> str:
    """``1000``, not ``1000.000000000000``; ``–`` for no value."""
    return "–" if value is None else format_exact(value)


@register.filter
def percent(value: float | None) -> str:
    """``85.5 %``; a capacity of 0 (``None``) is ``over``."""
    return "over" if value is None else f"{value:.1f} %"


@register.filter
def bar_width(value: float | None) -> str:
    """A capacity bar's filled share, 0–100 (a capacity of 0, ``None``, is full)."""
    return "100" if value is None else f"{max(0.0, min(value, 100.0)):.0f}"


@register.filter
def rate(value: float | None) -> str:
    """A per-minute rate: ``0``, ``0.4``, ``12.5``, ``1,250``."""
    if value is None:
        return "–"
    if value == 0:
        return "0"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


@register.filter
def in_zone(value: datetime | None, zone: ZoneInfo | str) -> str:
    """An instant as ``2026-12-07 14:05:00`` in ``zone`` (a ZoneInfo or its name)."""
    if value is None:
        return "–"
    zone = zone if isinstance(zone, ZoneInfo) else ZoneInfo(str(zone))
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@register.filter
def local_minute(value: datetime | None, zone: str) -> str:
    """An instant in a meter type's time zone, to the minute, with the zone's abbreviation:
    ``2027-01-12 00:00 CET``."""
    if value is None:
        return "–"
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


@register.filter
def capacity_share(meter) -> CapacityShare | None:
    """A meter's share of its capacity (``console.capacity``: the one rule every capacity bar uses)."""
    return capacity.capacity_share(meter.value, meter.capacity)


@register.simple_tag
def meter_type_daily_usage(meter_type) -> selectors.MeterTypeDailyUsage | None:
    """One meter type's usage per day over the dashboard's window (``CONSOLE_USAGE_DAYS``), read as
    the dashboard reads it; ``None`` for a type not saved yet or with a time zone being typed."""
    if meter_type is None or not meter_type.pk or meter_type._state.adding:
        return None
    try:
        ZoneInfo(meter_type.timezone)
    except (ValueError, ZoneInfoNotFoundError):
        return None
    found = selectors.usage_by_meter_type_per_day(
        meter_type.account_id, settings.CONSOLE_USAGE_DAYS, meter_type_ids=[meter_type.pk]
    )
    return found[0] if found else None


@register.simple_tag
def daily_usage_chart(
    usage: selectors.MeterTypeDailyUsage, *, css_class: str = "chart bar-chart"
) -> SafeString:
    """A bar per day; a SUM or INCREMENT day without records is 0, a MAX or MIN one has no bar."""
    empty = aggregation.empty_value(usage.aggregation)
    return bar_chart_svg(
        labels=[day.strftime("%Y-%m-%d") for day in usage.days],
        values=[empty if value is None else value for value in usage.values],
        title=f"{usage.name} · per day ({usage.timezone})",
        unit=usage.unit,
        width=640,
        height=180,
        css_class=css_class,
    )


@register.simple_tag
def period_chart(records, zone: str) -> SafeString:
    """A meter's flushed periods, oldest on the left, a bar per period (none for an empty MAX/MIN)."""
    return bar_chart_svg(
        labels=[
            record.period_start.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") for record in records
        ],
        values=[record.value for record in records],
        title=f"Value per period ({zone})",
        unit=records[0].unit if records else "",
        width=640,
        height=180,
        css_class="chart bar-chart metered-records-chart",
    )
