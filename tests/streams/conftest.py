"""Fixtures for the streams tests: solutions, example configurations, an import helper."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from streams import services

EXAMPLES_DIR = Path(__file__).parent / "examples"
ACTOR = {"type": "client", "id": "test-client"}


def example(name: str) -> dict:
    """A fresh copy of ``tests/streams/examples/<name>.json``."""
    return copy.deepcopy(json.loads((EXAMPLES_DIR / f"{name}.json").read_text()))


def minimal_config(name: str = "Minimal", **overrides) -> dict:
    """collector -> meter: the smallest useful stream."""
    config = {
        "name": name,
        "nodes": [
            {
                "id": "in",
                "name": "In",
                "type": "onlineCollector",
                "config": {"collectorId": "8a76066d-ff29-417c-a18e-abde22e44310"},
            },
            {"id": "count", "name": "Count", "type": "meter", "config": {"meterKey": "count-key"}},
        ],
        "edges": [{"source": "in", "target": "count"}],
    }
    config.update(overrides)
    return config


@pytest.fixture
def solution(account):
    return services.solution_create(account=account, name="Production")


@pytest.fixture
def second_solution(account):
    return services.solution_create(account=account, name="Staging")


@pytest.fixture
def foreign_solution(other_account):
    return services.solution_create(account=other_account, name="Theirs")


@pytest.fixture
def import_stream(account, solution):
    """Import through the service, as the API would: ``import_stream(config, **options)``."""

    def run(config, *, target=None, **options):
        return services.stream_import(
            account=account,
            solution_id=str((target or solution).pk),
            stream_config=config,
            actor=ACTOR,
            **options,
        )

    return run
