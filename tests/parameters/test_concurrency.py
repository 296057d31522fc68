"""The 100-parameter limit and name uniqueness hold when creates race (real PostgreSQL transactions)."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from config.api.errors import ApiError
from parameters import services
from parameters.models import Parameter

pytestmark = pytest.mark.django_db(transaction=True)


def race(account, names: list[str]) -> list[str]:
    """Create ``names`` at once from as many threads; returns each thread's outcome code."""
    barrier = threading.Barrier(len(names))
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            services.parameter_create(account=account, name=name, type="sensitive", value="s")
            outcome = "CREATED"
        except ApiError as exc:
            outcome = exc.code
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=create, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(outcomes)


def test_racing_creates_never_pass_the_limit(account):
    for index in range(98):
        services.parameter_create(account=account, name=f"p{index}", type="standard", value="v")
    outcomes = race(account, ["racer-1", "racer-2", "racer-3", "racer-4"])
    assert outcomes == ["CREATED", "CREATED", "PARAMETER_LIMIT_REACHED", "PARAMETER_LIMIT_REACHED"]
    assert Parameter.objects.filter(account=account).count() == 100


def test_racing_creates_of_one_name_make_one_parameter(account):
    outcomes = race(account, ["same"] * 3)
    assert outcomes == ["CREATED", "PARAMETER_ALREADY_EXISTS", "PARAMETER_ALREADY_EXISTS"]
    assert Parameter.objects.filter(account=account, name="same").count() == 1
