"""Fixtures shared by the wiring tests (the helpers they build on live in test_wiring.py)."""

from __future__ import annotations

import pytest
import time_machine

from collection.models import Collector
from tests.streams.wiring.test_wiring import T0, _meters


@pytest.fixture
def collector(account):
    return Collector.objects.create(account=account, name="wired", status=Collector.Status.ACTIVE)


@pytest.fixture
def meters(account):
    """Two meter types in different categories; users u1, u2 each have one meter of each."""
    with time_machine.travel(T0, tick=False):
        return _meters(account)
