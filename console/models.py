"""Proxy models: cross-app operator lists that need a change list of their own (no tables)."""

from __future__ import annotations

from metering.models import Meter


class MeterNearCapacity(Meter):
    """The meters whose value has reached a share of their capacity (``console.selectors``)."""

    class Meta:
        proxy = True
        verbose_name = "meter near capacity"
        verbose_name_plural = "meters near capacity"
