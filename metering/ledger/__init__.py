"""The usage ledger: the one service every way of usage in goes through.

``usage_apply`` takes a batch of records (the /ingest API, report usage, a stream's meter
processor, data-correction reprocessing) and, in one transaction:

1. validates each record; a record that cannot be counted becomes a ``DataCorrection`` with its
   reason (never dropped), one insert for the batch;
2. deduplicates and appends: one statement inserts the batch's idempotency keys
   (``INSERT … ON CONFLICT DO NOTHING RETURNING``), appends only the fresh records to the ledger
   and adds them to the hourly rollups (``ON CONFLICT DO UPDATE`` with ``+``, ``greatest``,
   ``least``). A key twice in the batch, or already in the ledger, is a duplicate: it is
   reported and never touches an aggregate;
3. locks the affected meters in id order (``SELECT … ORDER BY id FOR UPDATE``), computes their new
   state in Python from the fresh records of their open period, and writes it with one
   ``UPDATE … FROM unnest(…)``;
4. records each threshold crossed upward once per period (``ON CONFLICT DO NOTHING``) and
   publishes ``threshold.crossed`` in the same transaction.

A meter counts only the records of its open period ``[periodStart, periodEnd)`` (as Usage Engine
meters do). Earlier records are in the ledger and in usage queries but change no meter; records
at or after ``periodEnd`` (a period that ended but is not flushed yet) are in the ledger and are
folded into the meter's next period by ``meters_recompute`` when the meter is reset.

Locks are taken in one global order, so concurrent batches never deadlock: new meters (sorted),
meter rows (by id), idempotency keys (sorted), rollup rows (sorted), then rows only this
transaction can write (threshold events of meters it holds, new corrections sorted by key).

PostgreSQL runs a fixed number of statements per batch whatever its size (arrays bound as
parameters, prepared once per connection); SQLite (the embedded default, one writer at a time)
runs the same steps with portable SQL.

The package, by job: ``records`` (what goes in and out, and the working records between steps),
``parsing`` (step 1), ``binding`` (meter types and meters, step 2), ``state`` (the meters' new
state, step 4, by the rules of ``metering.aggregation``), ``thresholds`` (crossings and their
notification), ``store`` with ``postgres`` + ``sql`` and ``portable`` (the SQL of each step per
database), ``new_meters`` (meters created on first usage), ``service`` (``usage_apply``: the
steps in order) and ``maintenance`` (recompute after a reset, dedup-key purge). Import from
``metering.ledger``: the names below are its interface.
"""

from metering.aggregation import INCREMENT, MAX, MIN, SUM
from metering.ledger.maintenance import (
    HeldKey,
    correction_keys_release,
    correction_keys_restore,
    meters_recompute,
    usage_dedup_keys_purge,
)
from metering.ledger.new_meters import current_period
from metering.ledger.parsing import (
    Reason,
    RecordRefused,
    normalise_key,
    parse_timestamp,
    parse_value,
    request_hash,
)
from metering.ledger.records import (
    ACTIVE,
    DECIMAL_CONTEXT,
    DEFAULT_METER_KEY,
    INCLUDE,
    MAX_KEY_LENGTH,
    MAX_USER_ID_LENGTH,
    QUANTUM,
    SQLITE_CHUNK,
    VALUE_LIMIT,
    MeterOptions,
    Outcome,
    RecordResult,
    ThresholdCrossing,
    UsageInput,
    UsageResult,
)
from metering.ledger.service import usage_apply, usage_result
from metering.ledger.thresholds import threshold_limit, threshold_payload

__all__ = [
    "ACTIVE",
    "DECIMAL_CONTEXT",
    "DEFAULT_METER_KEY",
    "INCLUDE",
    "INCREMENT",
    "MAX",
    "MAX_KEY_LENGTH",
    "MAX_USER_ID_LENGTH",
    "MIN",
    "QUANTUM",
    "SQLITE_CHUNK",
    "SUM",
    "VALUE_LIMIT",
    "MeterOptions",
    "Outcome",
    "Reason",
    "RecordRefused",
    "RecordResult",
    "ThresholdCrossing",
    "UsageInput",
    "UsageResult",
    "HeldKey",
    "correction_keys_release",
    "correction_keys_restore",
    "current_period",
    "meters_recompute",
    "normalise_key",
    "parse_timestamp",
    "parse_value",
    "request_hash",
    "threshold_limit",
    "threshold_payload",
    "usage_apply",
    "usage_dedup_keys_purge",
    "usage_result",
]
