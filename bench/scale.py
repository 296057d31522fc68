"""Usage queries over ten million ledger rows: one customer, all customers, a dimension group-by.

    DATABASE_URL=postgres://… .venv/bin/python bench/scale.py [--rows 10000000] [--customers 10000] [--reload]

PostgreSQL only. The database is migrated, then (unless a bench account with exactly ``--rows``
rows is already there; ``--reload`` forces it) one bench account gets ``--rows`` ledger rows over
the last 90 days for ``--customers`` customers of one SUM meter type, written set-based:

- the ledger's monthly partitions for those 90 days (``ledger_partitions_ensure``), so the rows go
  straight into their months (the ledger is range-partitioned by month; see docs/scale.md);
- the ledger by one ``INSERT … SELECT … FROM generate_series`` (rows generated in index order,
  customer by customer and time ascending, so the btree index is appended to, not split);
  each customer's rows fall on 4 hours of each day, values 1 to 10, dimension ``region`` one of
  ``eu``/``us``/``apac``;
- the hourly rollups by one ``INSERT … SELECT … GROUP BY account, meter type, customer,
  date_trunc('hour', timestamp)`` over those ledger rows: the same figures the ledger service
  keeps with every batch, computed after the fact in one statement.

Then each query runs through the real service (``metering.compat.usage_queries.usage_query``,
what ``POST /usage`` calls), 5 times, best and median printed, beside the EXPLAIN of its SQL:

1. one customer, one month, by day (rollups; target < 50 ms);
2. all customers, one month, by day (rollups; target < 1 s);
3. and 4. the same two over an unaligned range, to the second (start 09:17:23, end 10:18:53: both
   edges inside hours that hold rows), whose partial hours are read from the ledger (exact edges);
5. all customers, one month, by day grouped by the ``region`` dimension (the ledger itself).

After the timed runs each answer is compared with a brute-force recount of the ledger (one
``GROUP BY`` day over ``start ≤ timestamp < end``, not timed) and the line says whether it equals it.

The bench data is left in place for the next run (``--drop`` deletes it and exits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from accounts.models import Account  # noqa: E402
from metering.compat.usage_queries import UsageQuery, usage_query  # noqa: E402
from metering.models import MeterType, UsageRecord, UsageRollup  # noqa: E402
from metering.partitions import ledger_partitions, ledger_partitions_ensure  # noqa: E402

BENCH_ACCOUNT = "bench-scale"
API_NAME = "scale-calls"
DAYS = 90
REPEATS = 5
# Inside the hours the bench's rows fall on (9:00-12:59 UTC), so both edges hold rows.
UNALIGNED_START = timedelta(hours=9, minutes=17, seconds=23)
UNALIGNED_END = timedelta(hours=24 - 11, minutes=41, seconds=7)


def drop() -> None:
    account = Account.objects.filter(name=BENCH_ACCOUNT).first()
    if account is None:
        return
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM metering_usagerollup WHERE account_id = %s", [account.pk])
        cursor.execute("DELETE FROM metering_usagerecord WHERE account_id = %s", [account.pk])
    MeterType.objects.filter(account=account).delete()
    account.delete()


def load(rows: int, customers: int, end: datetime) -> dict[str, float]:
    """The ledger and its rollups for the bench account, set-based; returns the seconds of each step."""
    drop()
    account = Account.objects.create(name=BENCH_ACCOUNT)
    meter_type = MeterType.objects.create(
        account=account,
        name="Scale calls",
        unit="calls",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="UTC",
        active_from="2020-01-01T00:00:00Z",
        api_name=API_NAME,
    )
    per_customer = rows // customers
    start = end - timedelta(days=DAYS)
    timings = {}
    # PostgreSQL's ledger is partitioned by month: make the partitions of the loaded months first, so
    # the rows go straight into them rather than into DEFAULT (the daily task only makes months ahead).
    started = time.perf_counter()
    made = ledger_partitions_ensure(since=start).created
    timings["partitions"] = time.perf_counter() - started
    print(f"ledger partitions: {len(made)} created ({', '.join(made) or 'all there'})")
    with connection.cursor() as cursor:
        started = time.perf_counter()
        # Row i: customer c = i / per_customer, its j-th row (j = i % per_customer) on day
        # j * DAYS / per_customer at hour 9 + j % 4, minute and second from j.
        cursor.execute(
            "INSERT INTO metering_usagerecord (account_id, meter_type_id, meter_id, user_id, value, timestamp, "
            "dimensions, source, source_ref, idempotency_key, created_at) "
            "SELECT %(account)s, %(type)s, %(meter)s, 'customer' || lpad((i / %(per)s)::text, 6, '0'), "
            "(i %% 10) + 1, "
            "%(start)s::timestamptz + ((((i %% %(per)s) * %(days)s) / %(per)s) * interval '1 day') "
            "  + ((9 + (i %% %(per)s) %% 4) * interval '1 hour') + (((i * 7) %% 3600) * interval '1 second'), "
            '(ARRAY[\'{"region": "eu"}\', \'{"region": "us"}\', \'{"region": "apac"}\'])[1 + i %% 3]::jsonb, '
            "'api', '', 'scale-' || i, now() "
            "FROM generate_series(0, %(last)s) AS i",
            {
                "account": account.pk,
                "type": meter_type.pk,
                "meter": meter_type.pk,
                "per": per_customer,
                "start": start,
                "days": DAYS,
                "last": per_customer * customers - 1,
            },
        )
        timings["ledger"] = time.perf_counter() - started
        started = time.perf_counter()
        cursor.execute(
            "INSERT INTO metering_usagerollup (account_id, meter_type_id, user_id, hour, sum, count, max, min) "
            "SELECT account_id, meter_type_id, user_id, date_trunc('hour', timestamp), sum(value), count(*), "
            "max(value), min(value) FROM metering_usagerecord WHERE account_id = %s "
            "GROUP BY account_id, meter_type_id, user_id, date_trunc('hour', timestamp)",
            [account.pk],
        )
        timings["rollups"] = time.perf_counter() - started
        started = time.perf_counter()
        cursor.execute("ANALYZE metering_usagerecord")
        cursor.execute("ANALYZE metering_usagerollup")
        timings["analyze"] = time.perf_counter() - started
    return timings


def timed(account_id, query: UsageQuery) -> tuple[list[float], list[str]]:
    durations = []
    sql: list[str] = []
    for _ in range(REPEATS):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            usage_query(account_id=account_id, query=query)
            durations.append(time.perf_counter() - started)
        sql = [entry["sql"] for entry in captured.captured_queries]
    return durations, sql


def recount(account_id, query: UsageQuery) -> dict[tuple, float]:
    """The query's SUM per (group values…, day), straight from the ledger rows: the answer to match."""
    dimensions = [name for name in query.group_by if name != "customerId"]
    groups = "".join("coalesce(dimensions ->> %s, ''), " for _ in dimensions)
    customers = " AND user_id = ANY(%s)" if query.customers is not None else ""
    meter_type = MeterType.objects.get(account_id=account_id, api_name=query.meter_api_name)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {groups}date_trunc('day', timestamp AT TIME ZONE 'UTC'), sum(value) "
            "FROM metering_usagerecord WHERE account_id = %s AND meter_type_id = %s "
            f"AND timestamp >= %s AND timestamp < %s{customers} "
            f"GROUP BY {', '.join(str(n + 1) for n in range(len(dimensions) + 1))}",
            [
                *dimensions,
                account_id,
                meter_type.pk,
                query.start,
                query.end,
                *([query.customers] if query.customers is not None else []),
            ],
        )
        return {
            (*row[:-2], int(row[-2].replace(tzinfo=UTC).timestamp())): float(row[-1])
            for row in cursor.fetchall()
        }


def answered(answer: dict, query: UsageQuery) -> dict[tuple, float]:
    """``POST /usage``'s answer as (group values…, bucket seconds) → value, buckets without usage left out."""
    dimensions = [name for name in query.group_by if name != "customerId"]
    found = {}
    for series in answer["clientMeters"][query.meter_api_name]:
        group = tuple(series["groupInfo"][name] for name in dimensions)
        for record in series["records"]:
            for bucket, value in record.items():
                if value:
                    found[(*group, int(bucket))] = float(value)
    return found


def explain(sql: str) -> list[str]:
    """The plan's node lines (no costs), for the ledger/rollup statement of a query."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql)
        lines = [row[0] for row in cursor.fetchall()]
    return [
        line
        for line in lines
        if any(word in line for word in ("Scan", "Aggregate", "Append", "Sort", "Cond"))
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--reload", action="store_true", help="Reload the bench data even if it is there.")
    parser.add_argument("--drop", action="store_true", help="Delete the bench data and exit.")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("bench/scale.py needs DATABASE_URL=postgres://…", file=sys.stderr)
        return 2
    call_command("migrate", verbosity=0)
    if args.drop:
        drop()
        return 0
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    account = Account.objects.filter(name=BENCH_ACCOUNT).first()
    expected = (args.rows // args.customers) * args.customers
    present = UsageRecord.objects.filter(account=account).count() if account else 0
    if args.reload or present != expected:
        timings = load(args.rows, args.customers, end)
        account = Account.objects.get(name=BENCH_ACCOUNT)
        print(
            f"loaded {expected:,} ledger rows in {timings['ledger']:.1f} s "
            f"({expected / timings['ledger']:,.0f} rows/s, INSERT … SELECT generate_series), "
            f"rollups in {timings['rollups']:.1f} s (INSERT … SELECT … GROUP BY hour), "
            f"ANALYZE {timings['analyze']:.1f} s"
        )
    else:
        print(f"reusing {present:,} ledger rows already loaded (--reload to load again)")
    rollups = UsageRollup.objects.filter(account=account).count()
    print(f"ledger rows: {expected:,}; rollup rows: {rollups:,}; customers: {args.customers:,}; days: {DAYS}")
    months = sorted(month for month in ledger_partitions().values() if month is not None)
    print(
        f"ledger: range-partitioned by month, {len(months)} monthly partitions "
        f"({months[0]:%Y-%m} to {months[-1]:%Y-%m}) and DEFAULT"
        if months
        else "ledger: not partitioned"
    )

    one_customer = f"customer{min(42, args.customers - 1):06d}"
    month_end = end.replace(hour=0)
    month_start = month_end - timedelta(days=30)
    queries = [
        (
            "one customer, one month by day (target < 50 ms)",
            UsageQuery(
                meter_api_name=API_NAME,
                start=month_start,
                end=month_end,
                aggregation="SUM",
                interval="DAY",
                customers=[one_customer],
            ),
        ),
        (
            "all customers, one month by day (target < 1 s)",
            UsageQuery(
                meter_api_name=API_NAME, start=month_start, end=month_end, aggregation="SUM", interval="DAY"
            ),
        ),
        # Unaligned ranges: the partial hour at each end is read from the ledger (exact edges).
        (
            "one customer, one month by day, unaligned to the second (target < 50 ms)",
            UsageQuery(
                meter_api_name=API_NAME,
                start=month_start + UNALIGNED_START,
                end=month_end - UNALIGNED_END,
                aggregation="SUM",
                interval="DAY",
                customers=[one_customer],
            ),
        ),
        (
            "all customers, one month by day, unaligned to the second (target < 1 s)",
            UsageQuery(
                meter_api_name=API_NAME,
                start=month_start + UNALIGNED_START,
                end=month_end - UNALIGNED_END,
                aggregation="SUM",
                interval="DAY",
            ),
        ),
        (
            "all customers, one month by day, grouped by dimension region",
            UsageQuery(
                meter_api_name=API_NAME,
                start=month_start,
                end=month_end,
                aggregation="SUM",
                interval="DAY",
                group_by=["region"],
            ),
        ),
    ]
    for label, query in queries:
        durations, sql = timed(account.pk, query)
        print(
            f"\n{label}: best {min(durations) * 1000:,.1f} ms, median {statistics.median(durations) * 1000:,.1f} ms "
            f"({REPEATS} runs, through usage_query)"
        )
        expected = recount(account.pk, query)
        exact = answered(usage_query(account_id=account.pk, query=query), query) == expected
        print(
            f"   equals a recount of the ledger (start ≤ timestamp < end, {len(expected)} buckets with usage): "
            f"{'yes' if exact else 'NO'}"
        )
        data_sql = [statement for statement in sql if "metering_usage" in statement]
        for line in explain(data_sql[-1]) if data_sql else []:
            print("   " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
