"""One rule for a capacity bar's colour, whichever page draws it."""

from decimal import Decimal

import pytest

from console.capacity import capacity_share


@pytest.mark.parametrize(
    ("value", "capacity", "level"),
    [
        (Decimal(0), Decimal(1000), "ok"),
        (Decimal("799.999"), Decimal(1000), "ok"),
        (Decimal(800), Decimal(1000), "near"),  # CONSOLE_NEAR_CAPACITY_PERCENT: 80
        (Decimal(880), Decimal(1000), "near"),
        (Decimal("999.99"), Decimal(1000), "near"),
        (Decimal(1000), Decimal(1000), "over"),
        (Decimal(1500), Decimal(1000), "over"),
        (Decimal(1), Decimal(0), "over"),
    ],
)
def test_a_share_is_ok_near_or_over(value, capacity, level):
    share = capacity_share(value, capacity)
    assert share is not None and share.level == level
    assert share.over is (level == "over")


def test_the_near_level_follows_the_setting(settings):
    settings.CONSOLE_NEAR_CAPACITY_PERCENT = 90
    share = capacity_share(Decimal(880), Decimal(1000))
    assert share is not None and share.level == "ok"


@pytest.mark.parametrize(
    ("value", "capacity"), [(None, Decimal(10)), (Decimal(3), None), (Decimal(0), Decimal(0))]
)
def test_no_share_without_a_capacity_a_value_or_any_use_of_a_zero_capacity(value, capacity):
    assert capacity_share(value, capacity) is None
