"""A Hypothesis state machine over the usage ledger (issue 12, item 2).

Rules: ingest (usage_apply), replay an earlier event, report usage (billing, idempotency keys,
with replays and reused keys), reset (meters_flush_all_due after moving the clock past the period
end with time-machine) and correction (a record without a user id, fixed and reprocessed). After
every step the meters' values and the metered records (one per flushed period) equal an in-memory
model's. Derandomized and bounded: a fixed number of examples and steps.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts import services as account_services
from accounts.models import Account
from config.api.errors import IdempotencyKeyReused
from metering import corrections
from metering import services as metering_services
from metering.compat import billing
from metering.flush import meters_flush_all_due
from metering.ledger import Outcome, UsageInput, usage_apply
from metering.models import DataCorrection, Meter, MeteredRecord, MeterType

pytestmark = pytest.mark.django_db

START = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
USERS = ("alice", "bob")
values = st.integers(min_value=0, max_value=1000).map(Decimal)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.traveller = time_machine.travel(START, tick=False)
        self.clock = self.traveller.start()
        self.account = account_services.account_get_or_create(name=f"sm-{uuid.uuid4().hex[:12]}")
        self.meter_type = metering_services.meter_type_create(
            account_id=self.account.pk,
            name="Calls",
            unit="calls",
            aggregation="SUM",
            reset_cron="0 0 * * *",
            timezone="Etc/UTC",
            api_name="calls",
        )
        self.meters = {
            user: metering_services.meter_create(
                account_id=self.account.pk,
                meter_type_id=self.meter_type.pk,
                meter_key="default",
                user_id=user,
            )
            for user in USERS
        }
        self.model_values = {user: self.meters[user].value or Decimal(0) for user in USERS}
        self.model_flushed: list[tuple[str, Decimal]] = []  # (user, value) per flushed period, in order
        self.sent: list[tuple[str, UsageInput]] = []  # ingested events, for replays
        self.reports: dict[str, dict] = {}  # report usage key -> body first sent
        self.counter = 0

    def teardown(self) -> None:
        self.traveller.stop()
        # Leave nothing due for the next example's flushes (the types protect the account).
        Meter.objects.filter(account_id=self.account.pk).delete()
        MeterType.objects.filter(account_id=self.account.pk).delete()
        Account.objects.filter(pk=self.account.pk).delete()

    def _key(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    @rule(user=st.sampled_from(USERS), value=values)
    def ingest(self, user: str, value: Decimal) -> None:
        record = UsageInput(
            user_id=user, value=value, meter_type_id=self.meter_type.pk, idempotency_key=self._key("ev")
        )
        result = usage_apply(account_id=self.account.pk, records=[record], source="api")
        assert (result.results[0].outcome, result.results[0].counted) == (Outcome.ACCEPTED, True), result
        self.sent.append((user, record))
        self.model_values[user] += value

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def replay(self, data) -> None:
        _, record = data.draw(st.sampled_from(self.sent))
        result = usage_apply(account_id=self.account.pk, records=[record], source="api")
        assert result.results[0].outcome == Outcome.DUPLICATE, result

    @rule(user=st.sampled_from(USERS), value=values, reuse=st.booleans())
    def report(self, user: str, value: Decimal, reuse: bool) -> None:
        if reuse and self.reports:
            key = sorted(self.reports)[int(value) % len(self.reports)]
            first = self.reports[key]
            body = {**first, "value": int(value)}
            try:
                answer = billing.usage_report(
                    account_id=self.account.pk, idempotency_key=key, body=json.dumps(body).encode()
                )
            except IdempotencyKeyReused:
                assert body != first
                return
            assert body == first
            assert (answer.status, answer.body) == (200, {"status": "duplicate", "idempotencyKey": key})
            return
        key = self._key("rep")
        body = {"value": int(value), "customerId": user, "meterName": "calls"}
        answer = billing.usage_report(
            account_id=self.account.pk, idempotency_key=key, body=json.dumps(body).encode()
        )
        assert answer.status == 202, answer
        self.reports[key] = body
        self.model_values[user] += value

    @rule(user=st.sampled_from(USERS), value=values)
    def correction(self, user: str, value: Decimal) -> None:
        key = self._key("bad")
        result = usage_apply(
            account_id=self.account.pk,
            source="api",
            records=[
                UsageInput(user_id=None, value=value, meter_type_id=self.meter_type.pk, idempotency_key=key)
            ],
        )
        assert result.results[0].outcome == Outcome.CORRECTION, result
        correction = DataCorrection.objects.get(pk=result.results[0].correction_id)
        assert correction.reason == "MISSING_USER_ID"
        corrections.data_correction_update(
            correction=correction, record={**correction.record, "userId": user}
        )
        done = corrections.data_correction_reprocess(correction=correction)
        assert done.status == "REPROCESSED", (done.status, done.message)
        self.model_values[user] += value
        # Reprocessing again is refused and changes nothing.
        with pytest.raises(corrections.DataCorrectionNotOpen):
            corrections.data_correction_reprocess(correction=done)

    @rule()
    def reset(self) -> None:
        self.clock.shift(timedelta(days=1))
        meters_flush_all_due()
        for user in USERS:
            self.model_flushed.append((user, self.model_values[user]))
            self.model_values[user] = Decimal(0)

    @invariant()
    def meters_and_metered_records_match_the_model(self) -> None:
        actual = {meter.user_id: meter.value for meter in Meter.objects.filter(account_id=self.account.pk)}
        assert actual == self.model_values
        flushed = sorted(
            (record.period_start, record.user_id, record.value)
            for record in MeteredRecord.objects.filter(account_id=self.account.pk)
        )
        # The first period starts when the meter was made, the next ones at midnight.
        expected_periods = [
            START if index < len(USERS) else START.replace(hour=0) + timedelta(days=index // len(USERS))
            for index in range(len(self.model_flushed))
        ]
        assert flushed == sorted(
            (period, user, value)
            for period, (user, value) in zip(expected_periods, self.model_flushed, strict=True)
        )


def test_the_ledger_matches_a_model_through_ingest_replay_report_reset_and_correction(db):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
