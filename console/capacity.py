"""A meter's value against its capacity, as every capacity bar of the console draws it: the
dashboard's near-capacity panel, the meters-near-capacity list, the meter list and page, and a
meter type's meters. One rule (``capacity_share``) and one template (``console/meter_capacity.html``),
so a share has the same colour on every page: below the near-capacity level
(``CONSOLE_NEAR_CAPACITY_PERCENT``, 80 % by default) it is the theme's primary colour, from it amber,
from 100 % red."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import SafeString


@dataclass(frozen=True)
class CapacityShare:
    percent: float | None  # None: a capacity of 0 with usage (over at once)
    level: str  # "ok", "near" or "over"

    @property
    def over(self) -> bool:
        return self.level == "over"


def capacity_share(value: Decimal | None, capacity: Decimal | None) -> CapacityShare | None:
    """``value`` against ``capacity`` (``None`` without a capacity or a value, or a capacity of 0
    with nothing used)."""
    if capacity is None or value is None:
        return None
    if capacity == 0:
        return CapacityShare(percent=None, level="over") if value > 0 else None
    percent = float(value) * 100 / float(capacity)
    if percent >= 100:
        level = "over"
    elif value * 100 >= capacity * settings.CONSOLE_NEAR_CAPACITY_PERCENT:  # exact, as the list's filter
        level = "near"
    else:
        level = "ok"
    return CapacityShare(percent=percent, level=level)


def meter_capacity_html(meter) -> SafeString:
    """The bar, the value against the capacity and the share; the value alone without a capacity."""
    return render_to_string("console/meter_capacity.html", {"meter": meter})
