"""``POST /ingest`` and ``POST /billing/meters/usage`` on the event loop (``config.hot.loop``).

The request is decoded and checked on the event loop by the routes' own ``decode``; its ledger
records then join those of the requests waiting at the same moment, and one ``usage_apply`` per
account and source writes them all (``config.grouping``): a batch of N requests costs the
database one transaction instead of N. The ledger's answers are split back per request, so each
one answers as the view would: a key sent twice in one batch counts once and its later request
is the duplicate (409 for another body), exactly as if the two had come one after the other.

``usage_apply`` is the synchronous service every write goes through; it runs in one thread per
worker process (its own Django connection), one batch at a time. Handed to the view: report
usage without an idempotency key (400 there) or naming a meter this process has not looked up
in the last few seconds (``billing.METER_CACHE_SECONDS``).

Requests whose records share an idempotency key are applied in successive batches (``_rounds``),
never in one: each is answered exactly as if it had come after the other, whatever became of the
first (a refused event does not take its key, so an event after it with the same ``uniqueId`` is
counted, as under WSGI).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import msgspec
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from config.api.principal import Principal
from config.hot.grouping import PerLoop
from config.hot.pipeline import Answer, HandOver
from metering.compat import amberflo, billing
from metering.ledger import UsageInput, UsageResult, normalise_key, usage_apply, usage_result
from metering.models import UsageSource

# How often the applying thread lets Django close a connection that is too old or broken.
CONNECTION_CHECK_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class _Share:
    """One request's records."""

    account_id: uuid.UUID
    source: str
    apply_filtering_rules: bool
    records: list[UsageInput]


class _Applier:
    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._checked = 0.0
        self.shares = PerLoop(self._write, max_values=64)

    async def _write(self, shares: list[_Share]) -> list[UsageResult | Exception]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-apply")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.apply, shares)

    def apply(self, shares: list[_Share]) -> list[UsageResult | Exception]:
        """The shares of one account and source as one ``usage_apply`` (each its own transaction);
        each share's outcome is its slice of the results, or the exception its batch raised."""
        if time.monotonic() >= self._checked + CONNECTION_CHECK_SECONDS:
            close_old_connections()
            self._checked = time.monotonic()
        batches: dict[tuple, list[int]] = {}
        for position, share in enumerate(shares):
            batches.setdefault((share.account_id, share.source, share.apply_filtering_rules), []).append(
                position
            )
        outcomes: list[UsageResult | Exception] = [None] * len(shares)  # type: ignore[list-item]
        for (account_id, source, filtering), positions in batches.items():
            for round_positions in _rounds(shares, positions):
                self._apply_batch(shares, round_positions, account_id, source, filtering, outcomes)
        return outcomes

    def _apply_batch(
        self,
        shares: list[_Share],
        positions: list[int],
        account_id: uuid.UUID,
        source: str,
        filtering: bool,
        outcomes: list,
    ) -> None:
        records = [record for position in positions for record in shares[position].records]
        try:
            results = usage_apply(
                account_id=account_id, records=records, source=source, apply_filtering_rules=filtering
            ).results
        except (OperationalError, InterfaceError) as exc:  # the database: every request of the batch says so
            connection.close()  # the next batch connects again
            for position in positions:
                outcomes[position] = exc
            return
        except Exception as exc:
            if len(positions) == 1:
                outcomes[positions[0]] = exc
                return
            for (
                position
            ) in positions:  # each request on its own: only the culprit fails (counted once either way)
                self._apply_batch(shares, [position], account_id, source, filtering, outcomes)
            return
        start = 0
        for position in positions:
            end = start + len(shares[position].records)
            outcomes[position] = usage_result(results[start:end])
            start = end

    def close(self) -> None:
        """Close the applying thread's connection and stop it (tests; a worker just exits)."""
        if self._executor is not None:
            self._executor.submit(_close_connection).result()
            self._executor.shutdown()
            self._executor = None


def _rounds(shares: list[_Share], positions: list[int]) -> list[list[int]]:
    """The shares in successive batches such that no two of one batch share an idempotency key,
    and a share comes after every earlier share it shares a key with (one request's own repeated
    keys stay together: the ledger judges them as the view's single ``usage_apply`` does)."""
    rounds: list[list[int]] = []
    last_round: dict[str, int] = {}  # key → the round of the last share holding it
    for position in positions:
        keys = {normalise_key(r.idempotency_key) for r in shares[position].records if r.idempotency_key}
        number = max((last_round[key] + 1 for key in keys if key in last_round), default=0)
        if number == len(rounds):
            rounds.append([])
        rounds[number].append(position)
        for key in keys:
            last_round[key] = number
    return rounds


def _close_connection() -> None:
    connection.close()  # this thread's connection (``connection.close`` would bind the caller's)


applier = _Applier()


def settle_ingest(
    principal: Principal, work: tuple[list[amberflo.MeterEvent], str]
) -> tuple[list[UsageInput], list[tuple[int, str, str | None]], str]:
    events, prefer = work
    records, items = amberflo.ingest_records(events)
    return records, items, prefer


async def ingest_on_loop(
    principal: Principal, settled: tuple[list[UsageInput], list[tuple[int, str, str | None]], str]
) -> Answer:
    records, items, prefer = settled
    result = await applier.shares.submit(_Share(principal.account_id, UsageSource.INGEST_API, True, records))
    content, headers = amberflo.IngestAnswer(result=result, items=items).reply(prefer)
    return 200, content, headers


def settle_report(principal: Principal, work: tuple[str, bytes]) -> billing.PreparedReport:
    """The report checked with the meters this process has cached, or ``HandOver`` (no key: the
    view's 400; a meter not cached: the view looks it up)."""
    key, body = work
    if not key:
        raise HandOver()
    prepared = billing.report_prepare(
        account_id=principal.account_id,
        idempotency_key=key,
        body=body,
        find_meter=billing.cached_meter_for_report,
        key_known=None,  # an archived meter: the view checks for a replay (a database read)
    )
    if prepared is None:  # the view looks the meter up, and this process caches it
        raise HandOver(key=("report meter", principal.account_id))
    return prepared


async def report_on_loop(principal: Principal, prepared: billing.PreparedReport) -> Answer:
    result = await applier.shares.submit(
        _Share(principal.account_id, UsageSource.REPORT_API, False, [prepared.record])
    )
    answer = billing.report_answer(prepared, result.results[0])
    return answer.status, msgspec.json.encode(answer.body), {}
