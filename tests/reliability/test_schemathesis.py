"""Schemathesis against the service's own OpenAPI schema: every operation, every check, stateful too.

The schema is loaded from ``/openapi.json`` (its OAuth2 scheme said as the bearer header it is, see
``_oauth2_as_its_bearer_header``) and requests go through the WSGI application (``config.wsgi``), so a
new endpoint is tested the moment it is in the schema: nothing here lists endpoints. Every request
carries a bearer token holding every scope (the OAuth2 scheme's configured credential), and seed
001's optional X-Account-Id / X-Application-Id, where an operation declares them, name that token's
account and application: any other value is a 403 by design (ACCOUNT_MISMATCH), which the
headers' descriptions say and tests/contract/test_seed_001_usage_engine_headers.py tests. Every
built-in check runs (the registry is asked, so a check a later schemathesis adds runs too), in the
examples, coverage and fuzzing phases and in the stateful phase (links inferred from the schema:
create → get/patch/delete…).

Two explicit, small tables are the only way to relax anything (and the seeds' own samples, sent as
printed by the examples phase: ``REFUSED_SEED_SAMPLES``):

- ``EXCLUDED_OPERATIONS``: operations of apps still being changed elsewhere, with the reason (empty
  now: every operation runs). An exclusion of an operation that no longer exists fails the run, so
  the table cannot go stale.
- ``SEMANTIC_400``: for a schema-valid request the API may answer 400 only when every error detail
  names a field (or a field and message) whose rule JSON Schema cannot express (a URL whose host
  must resolve to public addresses, an opaque cursor, a stream graph without cycles, a date not in
  the past…), or is a null character, which the API refuses everywhere (its description says so
  once). Any other 400 to schema-valid data fails ``positive_data_acceptance`` as usual.

Bounded: a fixed seed, ``derandomize``, a few examples per operation; the file runs in well under
two minutes on two shared cores. Rate limits stay off (tests/conftest.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts import services as account_services
from config.api.seed_samples import SEED_REQUEST_SAMPLES
from config.wsgi import application
from tests.conftest import issue_token, make_access
from tests.reliability.resources import FACTORIES

SEED = 20260701
MAX_EXAMPLES = 25  # per operation, in the fuzzing phase (examples and coverage phases add their own)
STATEFUL_EXAMPLES = 30
STATEFUL_STEPS = 8

# "METHOD /path" → why it is not tested yet. Only for apps not merged or being changed right now, each
# entry naming the failure it has; empty when every operation is tested.
EXCLUDED_OPERATIONS: dict[str, str] = {}

# "METHOD /path" → {regular expression that a 400's detail must match in full, as its field or as
# "field: message": the rule JSON Schema cannot say}.
URL_RULE = "the host must resolve, and only to public addresses (DNS, at registration)"
METER_TYPE_RULES = {
    "activeFrom": "not in the past (a rule against the clock)",
    "activeTo": "after activeFrom (a rule between two fields), not in the past (against the clock)",
    r"resetSchedule\.cron: '.*' never fires\.": "a schedule of the documented syntax that never fires (30 February)",
    r"thresholds: capacityPercentage thresholds need a capacity\.": "a rule between two fields (or the stored capacity)",
    r"thresholds: Threshold \d+: the name '.*' is used twice\.": "names distinct across the thresholds' objects",
}
USAGE_QUERY_RULES = {
    "endTimeInSeconds": "after startTimeInSeconds (a rule between two fields); required beside a flat start",
    "startTimeInSeconds": "the range flat or in timeRange, one of the two (a rule between fields)",
    "timeRange": "the range flat or in timeRange, not both (a rule between fields)",
    "timeGroupingInterval": "at most USAGE_QUERY_MAX_BUCKETS buckets of the interval between the two times",
}
SEMANTIC_400: dict[str, dict[str, str]] = {
    "POST /meter-types": METER_TYPE_RULES,
    "PATCH /meter-types/{id}": METER_TYPE_RULES,
    "POST /notification-endpoints": {"url": URL_RULE},
    "PATCH /notification-endpoints/{id}": {"url": URL_RULE},
    "POST /billing/meters/usage": {
        "Idempotency-Key": "one of two headers (Idempotency-Key, x-api-idempotency-key)"
    },
    "POST /usage": USAGE_QUERY_RULES,
    "POST /usage/batch": {rf"(\d+\.)?{field}": rule for field, rule in USAGE_QUERY_RULES.items()},
    "PUT /meter-definition": {
        "type": "the type cannot change: only the definition's current type is accepted"
    },
    "GET /streams": {"cursor": "a nextCursor this endpoint returned (its content is opaque)"},
    "PATCH /parameters/{name}": {
        "type": "the type cannot change: only the parameter's current type is accepted"
    },
    "POST /streams/import": {
        r"nodes\[\d+\]\.config(\..*)?": "a node's config is checked for its type (CEL compiles, fields exist…)",
        r"nodes\[\d+\]\.id": "node ids are unique in the stream",
        r"edges\[\d+\](\.source|\.target)?": "edges join existing nodes, once, inputs and outputs at the ends",
        "edges": "the edges form no cycle",
        r"nodeGroups\[\d+\]\.(id|nodeIds\[\d+\])": "group ids are unique; groups name existing nodes",
    },
}
# The seeds' request samples are the operations' examples, verbatim (config.api.seed_samples), and the
# examples phase sends them as they are. Those printed with a required object folded to {} or [] (the
# seed's renderer) are refused as printed, as their example's description and docs/compatibility.md
# say: a 400 to exactly such a body is the documented answer, not a rejection of valid data.
REFUSED_SEED_SAMPLES: dict[str, list] = {
    key: [sample.value for sample in samples if sample.refused_as_printed]
    for key, samples in SEED_REQUEST_SAMPLES.items()
}
# A convention of every endpoint, said once in the API description (SPECTACULAR_SETTINGS) rather than
# on every string: a null character is refused (400) wherever it is sent; PostgreSQL cannot store it.
NULL_CHARACTER_MESSAGE = "Null characters are not allowed."

load_all_checks()
ALL_CHECKS = [check for check in CHECKS.get_all() if check is not positive_data_acceptance]
EXAMPLES: Counter[str] = Counter()


def _semantic_fields_only(case, response) -> bool:
    """A 400 whose every detail is a rule of ``SEMANTIC_400`` for this operation, or a null character;
    or a 400 to a seed sample refused as printed (``REFUSED_SEED_SAMPLES``)."""
    label = f"{case.method.upper()} {case.path}"
    allowed = SEMANTIC_400.get(label, {})
    if response.status_code != 400:
        return False
    if case.body in REFUSED_SEED_SAMPLES.get(label, []):
        return True
    try:
        details = json.loads(response.content)["details"]
    except (ValueError, KeyError, TypeError):
        return False

    def is_allowed(detail: dict) -> bool:
        described = f"{detail['field']}: {detail['message']}"
        return detail["message"] == NULL_CHARACTER_MESSAGE or any(
            re.fullmatch(pattern, detail["field"]) or re.fullmatch(pattern, described) for pattern in allowed
        )

    return bool(details) and all(is_allowed(detail) for detail in details)


def positive_data_acceptance_beyond_json_schema(ctx, response, case):
    """``positive_data_acceptance``, except for 400s that only name the fields of ``SEMANTIC_400``."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if _semantic_fields_only(case, response):
            return None
        raise


CHECKS_TO_RUN = [*ALL_CHECKS, positive_data_acceptance_beyond_json_schema]


def _config(caller: Caller) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # The token as the OAuth2 scheme's credential (sent as a bearer token): where an operation
            # also takes an X-API-KEY (either one), schemathesis then sends no generated key next to
            # the token (the API checks every credential sent, so an unknown key would make every
            # request a 401).
            "auth": {"openapi": {"OAuth2": {"bearer": caller.token}}},
            # Seed 001's identity headers: optional, and when sent they must name the token's own
            # account and application, so those are the values to send.
            "parameters": {
                "header.X-Account-Id": caller.account_id,
                "header.X-Application-Id": caller.application_id,
            },
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
        }
    )


@dataclass(frozen=True)
class Caller:
    token: str
    account_id: str
    application_id: str


@pytest.fixture
def caller(transactional_db) -> Caller:
    """A token with every scope, for an account that holds one of every resource (so lists answer
    real ids, which schemathesis reuses in the paths of later requests)."""
    account = account_services.account_get_or_create(name="schemathesis")
    for factory in dict.fromkeys(FACTORIES.values()):
        factory(account)
    access, secret = make_access(account, name="schemathesis")
    return Caller(issue_token(access, secret), str(account.pk), str(access.pk))


def _is_excluded(ctx) -> bool:
    return f"{ctx.operation.method.upper()} {ctx.operation.path}" in EXCLUDED_OPERATIONS


def _oauth2_as_its_bearer_header(document: dict) -> dict:
    """The served document, with the OAuth2 scheme said as what it puts on a request: an
    ``Authorization: Bearer`` header (RFC 6750). Schemathesis derives no credential parameter from an
    oauth2 scheme, so its ``ignored_auth`` check would probe nothing (or strip only X-API-KEY and keep
    the token); told where the token goes, it strips it and expects 401 on every operation."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["OAuth2"]["type"] == "oauth2"
    schemes["OAuth2"] = {"type": "http", "scheme": "bearer"}
    return document


@pytest.fixture
def api_schema(caller):
    """The schema as /openapi.json serves it (the OAuth2 scheme as its bearer header); every request
    carries ``caller``'s token (schemathesis's auth config)."""
    served = Client().get("/openapi.json")
    assert served.status_code == 200
    loaded = schemathesis.openapi.from_dict(
        _oauth2_as_its_bearer_header(served.json()), config=_config(caller)
    )
    loaded.app = application  # requests go through the WSGI application, as from_wsgi would send them
    loaded.location = "/openapi.json"
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema").exclude(func=_is_excluded)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_passes_every_check(case):
    response = case.call_and_validate(checks=CHECKS_TO_RUN)
    EXAMPLES[f"{case.method.upper()} {case.path} {response.status_code}"] += 1


@contextmanager
def connection_kept_across_requests():
    """Django closes a connection left in a transaction when a request starts or finishes (the WSGI
    handler's close_old_connections); its test client turns that off, as this does, so that each
    scenario can run inside one transaction the test rolls back."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_stateful_sequences_pass_every_check(api_schema):
    base = api_schema.exclude(func=_is_excluded).as_state_machine()

    class Workflow(base):
        """Each scenario starts from the same database: Hypothesis replays scenarios while it
        explores, and a scenario that saw other rows (a list one item longer, a limit reached)
        would draw differently the second time."""

        def setup(self):
            self.scenario = transaction.atomic()
            self.scenario.__enter__()

        def teardown(self):
            transaction.set_rollback(True)
            self.scenario.__exit__(None, None, None)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            EXAMPLES[f"stateful: {case.method.upper()} {case.path} {response.status_code}"] += 1
            case.validate_response(
                response, checks=CHECKS_TO_RUN, transport_kwargs=kwargs or None, recorder=self.recorder
            )

    with connection_kept_across_requests():
        Workflow.run(
            settings=settings(
                max_examples=STATEFUL_EXAMPLES,
                stateful_step_count=STATEFUL_STEPS,
                derandomize=True,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
        )


def test_exclusions_name_operations_that_exist(api_schema):
    """An exclusion must point at a real operation, so it is removed when the endpoint changes."""
    operations = {
        f"{method.upper()} {path}"
        for path, methods in api_schema.raw_schema["paths"].items()
        for method in methods
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert set(EXCLUDED_OPERATIONS) <= operations
    assert set(SEMANTIC_400) <= operations
