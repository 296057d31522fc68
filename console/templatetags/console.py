"""``{% console_dashboard %}`` (the admin index's dashboard) and number formatting for panels."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django import template
from django.template.loader import render_to_string
from django.utils.safestring import SafeString
from django.utils.timezone import now as utc_now

from console.charts import format_exact
from console.dashboard import dashboard_account
from console.panels import render_panels

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
