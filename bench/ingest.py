"""Ingestion benchmark of the usage ledger (bounded; prints its figures beside their ceilings).

    DATABASE_URL=postgres://… REDIS_URL=redis://… CELERY_BROKER_URL=redis://… \\
        .venv/bin/python bench/ingest.py [--seconds 8] [--customers 100] [--skip-batches] [--skip-http]
            [--rounds 3] [--connections 16] [--clients 8] [--workers 4] [--no-asgi] [--asgi-workers 2]

(a) Batches of 1,000 events through ``usage_apply`` (dedup, ledger, rollups, meters) in one and
    in two processes (the batches made before the clock starts), beside the same SQL under pgbench
    (-c 1 and -c 2) in the same run: the batch's write statement alone, and the batch's whole
    statement sequence as ``usage_apply`` ran it (in one transaction only if it used one).
(b) Single-event requests under gunicorn, load from ``wrk`` (keep-alive; the Python client of
    bench/_common.py when wrk is absent or with --python-client): ``POST /ingest`` and
    ``POST /billing/meters/usage`` beside the minimal Django JSON view ``GET /bench/minimal``
    (routed by bench/wsgi.py and bench/asgi.py), on a WSGI server (``--workers`` sync workers) and, unless
    --no-asgi, an ASGI one (config.asgi on ``--asgi-workers`` uvicorn workers). Every request is
    unique (its own ``uniqueId`` / ``Idempotency-Key``), the events spread over ``--customers``
    customers, and the calls carry ``--clients`` API keys (``X-API-KEY``; the rate limit, 2000/s
    burst 50, is a bucket per key and stays ON; wrk runs at most 4 threads, each rotating through
    its keys). The phases alternate in ``--rounds`` slices, so on a shared machine all meet the
    same neighbours. Prints req/s, p50/p99, CPU per request, statuses (429s apart), each endpoint
    as a share of the faster minimal view, the targets (each endpoint >= 2,000 req/s, p99 < 50 ms, on the
    better server), the web workers' peak RSS, and checks that every accepted answer (200 from
    /ingest, 202 from report usage) is a ledger row: accepted, stored, lost.

Each run uses a new account, so it never counts into earlier runs' meters. PostgreSQL only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench import _common  # noqa: E402 - the bench runs as a script from the project root

BATCH = 1000
DUPLICATE_SHARE = 0.05  # each batch replays this share of the previous batch's keys


def setup_django() -> None:
    import django

    django.setup()


# --- (a) batches through usage_apply --------------------------------------------------------------


def _batch(meter_type_id, customers: list[str], previous: list[str], now_ms: int):
    from metering.ledger import UsageInput

    replays = random.sample(previous, int(BATCH * DUPLICATE_SHARE)) if previous else []
    keys = replays + [uuid.uuid4().hex for _ in range(BATCH - len(replays))]
    return [
        UsageInput(
            user_id=random.choice(customers),
            value=random.randint(1, 10),
            timestamp=now_ms,
            meter_type_id=meter_type_id,
            idempotency_key=key,
        )
        for key in keys
    ], keys


def ingest_batches(
    account_id: str,
    meter_type_id: str,
    customers: list[str],
    seconds: float,
    start_at: float,
    max_batches: int = 500,
) -> tuple[int, float, int]:
    """Apply batches for ``seconds`` (at most ``max_batches``), from wall time ``start_at`` on.
    Returns (events, elapsed, accepted). The batches are made before the clock starts: making
    test data is the benchmark's work, not the ledger's."""
    setup_django()
    from django.db import connection

    from metering.ledger import usage_apply

    now_ms = int(time.time() * 1000)
    batches, previous = [], []
    for _ in range(min(max_batches, int(seconds * 60))):  # more than 60 batches/s per process is not expected
        records, previous = _batch(uuid.UUID(meter_type_id), customers, previous, now_ms)
        batches.append(records)
    connection.ensure_connection()
    time.sleep(max(0.0, start_at - time.time()))  # every process starts together
    events = accepted = 0
    started = time.perf_counter()
    for records in batches:
        result = usage_apply(account_id=uuid.UUID(account_id), records=records, source="api")
        events += len(records)
        accepted += result.accepted
        if time.perf_counter() - started >= seconds:
            break
    elapsed = time.perf_counter() - started
    connection.close()
    return events, elapsed, accepted


def _parallel(processes: int, account_id: str, meter_type_id: str, customers: list[str], seconds: float):
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3 + seconds * 0.5  # after start-up and making the batches
    with context.Pool(processes) as pool:
        results = pool.starmap(
            ingest_batches, [(account_id, meter_type_id, customers, seconds, start_at)] * processes
        )
    events = sum(r[0] for r in results)
    return events / max(r[1] for r in results), sum(r[2] for r in results)


def _capture_batch_sql(account_id, meter_type_id, customers) -> tuple[list[str], bool]:
    """The SQL of one batch with its parameters inlined (for pgbench), and whether it ran in one
    transaction (the batch path) or as statements that are each their own (the one-statement path)."""
    from django.db import connection
    from psycopg import ClientCursor

    from metering.ledger import usage_apply

    captured: list[tuple[str, object]] = []
    in_transaction = False

    def capture(execute, sql, params, many, context):
        nonlocal in_transaction
        in_transaction = in_transaction or connection.in_atomic_block
        captured.append((sql, params))
        return execute(sql, params, many, context)

    records, _ = _batch(meter_type_id, customers, [], int(time.time() * 1000))
    with connection.execute_wrapper(capture):
        usage_apply(account_id=account_id, records=records, source="api")
    renderer = ClientCursor(connection.connection)
    statements = []
    for sql, params in captured:
        if sql.split()[0] in ("SAVEPOINT", "RELEASE"):
            continue
        plain = re.sub(r"%(\(\w+\))?[bt]", lambda m: f"%{m.group(1) or ''}s", sql)
        statements.append(" ".join(renderer.mogrify(plain, params).split()))
    return statements, in_transaction


def _pgbench(script: str, clients: int, seconds: int) -> float:
    from django.conf import settings

    database = settings.DATABASES["default"]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
        file.write(script)
    command = [
        "pgbench",
        "-n",
        "-M",
        "prepared",
        "-f",
        file.name,
        "-c",
        str(clients),
        "-j",
        str(clients),
        "-T",
        str(seconds),
        "-h",
        database["HOST"] or "127.0.0.1",
        "-p",
        str(database["PORT"] or 5432),
        "-U",
        database["USER"] or "postgres",
        database["NAME"],
    ]
    environment = {**os.environ, "PGPASSWORD": database["PASSWORD"] or ""}
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, env=environment)
    os.unlink(file.name)
    match = re.search(r"tps = ([\d.]+)", output.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", output.stdout)
    if match is None or (failed and failed.group(1) != "0"):
        raise RuntimeError(f"pgbench failed: {output.stdout[-500:]} {output.stderr[-1500:]}")
    return float(match.group(1))


def bench_batches(seconds: float, pgbench_seconds: int, customer_count: int) -> None:
    from accounts.services import account_get_or_create
    from metering import services
    from metering.ledger import usage_apply
    from metering.models import MeterType

    account = account_get_or_create(name=f"bench-ledger-{uuid.uuid4().hex[:8]}")
    meter_type = services.meter_type_create(
        account_id=account.pk,
        name="Bench calls",
        unit="calls",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
    )
    MeterType.objects.filter(pk=meter_type.pk).update(auto_create_meters=True)
    customers = [f"customer-{n}" for n in range(customer_count)]
    # Warm up: the customers' meters exist before the clock starts.
    records, _ = _batch(meter_type.pk, customers, [], int(time.time() * 1000))
    usage_apply(account_id=account.pk, records=records, source="api")

    print(f"(a) batches of {BATCH} events, {customer_count} customers, {DUPLICATE_SHARE:.0%} replayed keys")
    one, _ = _parallel(1, str(account.pk), str(meter_type.pk), customers, seconds)
    two, _ = _parallel(2, str(account.pk), str(meter_type.pk), customers, seconds)

    statements, in_transaction = _capture_batch_sql(account.pk, meter_type.pk, customers)
    keyed = [s.replace("r->>0 AS key", "((r->>0) || :p::text) AS key") for s in statements]
    variable = "\\set p random(1, 9223372036854775806)\n"
    append = variable + next(s for s in keyed if ":p::text" in s) + ";\n"
    whole = variable + ";\n".join(keyed) + ";\n"
    if in_transaction:
        whole = variable + "BEGIN;\n" + ";\n".join(keyed) + ";\nCOMMIT;\n"
    ceilings = {
        name: [_pgbench(script, clients, pgbench_seconds) * BATCH for clients in (1, 2)]
        for name, script in (("append", append), ("whole", whole))
    }
    print(f"    {'':38}{'1 process':>12}{'2 processes':>14}")
    print(f"    {'usage_apply (events/s)':38}{one:>12,.0f}{two:>14,.0f}")
    print(
        f"    {'pgbench: the write statement (events/s)':38}{ceilings['append'][0]:>12,.0f}{ceilings['append'][1]:>14,.0f}"
    )
    print(
        f"    {'pgbench: whole batch SQL (events/s)':38}{ceilings['whole'][0]:>12,.0f}{ceilings['whole'][1]:>14,.0f}"
    )
    print(
        f"    statements per batch: {len(statements)} ({', '.join(s.split()[0] for s in statements)}), "
        + ("in one transaction" if in_transaction else "each its own transaction")
    )
    print(
        f"    target: >= 50,000 events/s (2 processes) {'OK' if two >= 50_000 else 'MISSED'}; "
        f"{two / ceilings['whole'][1]:.0%} of the same SQL under pgbench -c 2"
    )


# --- (b) single-event HTTP requests ---------------------------------------------------------------

SERVER_LABELS = {"wsgi": "WSGI", "asgi": "ASGI"}
ENDPOINT_LABELS = {
    "minimal": "GET /bench/minimal",
    "ingest": "POST /ingest",
    "report": "POST /billing/meters/usage",
}
TARGET_RPS = 2000
TARGET_P99_MS = 50.0


def _peak_rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) if match else 0


def _stored(account_id) -> dict[str, int]:
    """Ledger rows of the bench account by source."""
    from django.db.models import Count

    from metering.models import UsageRecord

    rows = UsageRecord.objects.filter(account_id=account_id).values("source").annotate(rows=Count("id"))
    return {row["source"]: row["rows"] for row in rows}


def _ok(name: str, result) -> int:
    """The answers that mean "stored": 200 for /ingest and the minimal view, 202 for report usage."""
    return result.count(202 if name == "report" else 200)


def bench_http(options: argparse.Namespace) -> None:
    from accounts.services import account_get_or_create, api_key_create
    from metering.compat import amberflo
    from metering.models import UsageSource

    account = account_get_or_create(name=f"bench-http-{uuid.uuid4().hex[:8]}")
    amberflo.meter_definition_create(
        account_id=account.pk,
        meter_api_name="bench-calls",
        display_name="Bench calls",
        kind=amberflo.SUM_OF_ALL_USAGE,
    )
    # One API key per client: the rate limit (2000/s, burst 50) is a bucket per key.
    api_keys = [
        api_key_create(
            account=account, name=f"bench-{n}", scopes=["usage-metering:ingest:usage", "meter-report"]
        )[1]
        for n in range(options.clients)
    ]
    threads = max(1, min(4, options.clients, options.connections))  # wrk threads; each rotates its keys
    # One timestamp for the run (inside the meters' open period); customers spread over the meters.
    customer = "bench-customer-" + _common.SLOT
    ingest_body = json.dumps(
        {
            "meterApiName": "bench-calls",
            "customerId": customer,
            "meterValue": 1,
            "meterTimeInMillis": int(time.time() * 1000),
            "uniqueId": _common.UNIQUE,
        },
        separators=(",", ":"),
    ).encode()
    report_body = json.dumps(
        {"value": 1, "customerId": customer, "meterName": "bench-calls"}, separators=(",", ":")
    ).encode()
    endpoints = {  # name: (method, path, body, extra headers)
        "minimal": ("GET", "/bench/minimal", b"", None),
        "ingest": ("POST", "/ingest", ingest_body, None),
        "report": ("POST", "/billing/meters/usage", report_body, {"Idempotency-Key": _common.UNIQUE}),
    }
    server_env = {"RATE_LIMIT_ENABLED": "1"}
    slice_seconds = max(1, round(options.seconds / options.rounds))
    tool = "wrk" if _common.have_wrk() and not options.python_client else "python http.client"
    clients = (
        f"wrk -t{threads} -c{options.connections} (keep-alive)"
        if tool == "wrk"
        else f"python http.client, {options.connections} processes (keep-alive)"
    )
    print(
        f"(b) single-event requests, load: {clients}; {options.clients} API keys (X-API-KEY, rate limit "
        f"2000/s burst 50 each, ON); {options.customers} customers; unique uniqueId / Idempotency-Key per "
        f"request; {slice_seconds * options.rounds} s per phase in {options.rounds} alternating "
        f"round{'s' if options.rounds > 1 else ''}"
    )
    print(f"    WSGI: gunicorn {options.workers} sync workers (bench.wsgi, a connection per request)")
    if options.asgi:
        print(f"    ASGI: gunicorn {options.asgi_workers} uvicorn workers (bench.asgi, keep-alive)")
    print(f"    machine: {_common.machine_note()}")

    def load(server: _common.Server, name: str, seconds: int):
        method, path, body, headers = endpoints[name]
        meter = _common.CpuMeter(
            server_pid=server.process.pid, database_backend_pids=_common.database_backend_pids
        )
        cpu_before = meter.read()
        result = _common.run_load(
            url=f"{server.base_url}{path}",
            method=method,
            body=body,
            tokens=[""] if name == "minimal" else api_keys,
            token_header="X-API-KEY",
            headers=headers,
            slots=options.customers,
            threads=threads,
            connections=options.connections,
            seconds=seconds,
            max_requests=options.max_requests,
            force_python=options.python_client,
        )
        result.cpu_seconds = meter.read() - cpu_before
        return result

    with contextlib.ExitStack() as stack:
        servers = {"wsgi": stack.enter_context(_common.Server(workers=options.workers, env=server_env))}
        if options.asgi:
            servers["asgi"] = stack.enter_context(
                _common.Server(workers=options.asgi_workers, env=server_env, asgi=True)
            )
        if options.warmup:  # every worker connected, statements prepared, keys and meters cached
            for server in servers.values():
                for name in endpoints:
                    load(server, name, options.warmup)
        before = _stored(account.pk)
        slices: dict[tuple[str, str], list] = {(kind, name): [] for kind in servers for name in endpoints}
        for _ in range(options.rounds):
            for (kind, name), results in slices.items():
                results.append(load(servers[kind], name, slice_seconds))
        after = _stored(account.pk)
        peak = {
            kind: (
                [_peak_rss_kib(pid) for pid in _common.children_of(server.process.pid)],
                _peak_rss_kib(server.process.pid),
            )
            for kind, server in servers.items()
        }
    results = {phase: _common.combine(parts) for phase, parts in slices.items()}

    ceiling_kind = max(servers, key=lambda kind: results[(kind, "minimal")].per_second)
    ceiling = results[(ceiling_kind, "minimal")].per_second
    print(
        f"    {'':5}{'':27}{'req/s':>8}{'2xx/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'CPU us':>8}{'429':>7}"
        f"{'of min':>8}  statuses; 2xx/s per round; p99 per round"
    )
    for (kind, name), result in results.items():
        ok_rate = _ok(name, result) / result.seconds if result.seconds else 0.0
        rounds = [
            round(_ok(name, part) / part.seconds) if part.seconds else 0 for part in slices[(kind, name)]
        ]
        print(
            f"    {SERVER_LABELS[kind]:5}{ENDPOINT_LABELS[name]:27}{result.per_second:>8,.0f}{ok_rate:>8,.0f}"
            f"{result.p50_ms:>8.2f}{result.p99_ms:>8.2f}{result.cpu_us_per_request:>8.0f}{result.count(429):>7}"
            f"{ok_rate / ceiling if ceiling else 0:>8.0%}  {result.statuses}"
            + (f" socket errors {result.socket_errors}" if result.socket_errors else "")
            + f"; {rounds}; p99 ms per round {[round(part.p99_ms, 1) for part in slices[(kind, name)]]}"
        )
    print(
        f"    (of min: 2xx/s as a share of the faster minimal view, {SERVER_LABELS[ceiling_kind]} "
        f"{ceiling:,.0f} req/s; CPU us: server + database + redis + load generator per request)"
    )
    throttled = {
        f"{SERVER_LABELS[kind]} {ENDPOINT_LABELS[name]}": result.count(429)
        for (kind, name), result in results.items()
        if result.count(429)
    }
    print(f"    429 answers: {throttled or 'none'}")

    checks = []
    for name, source in (("ingest", UsageSource.INGEST_API), ("report", UsageSource.REPORT_API)):
        accepted = sum(_ok(name, results[(kind, name)]) for kind in servers)
        stored = after.get(source, 0) - before.get(source, 0)
        # Requests still in flight when a slice ends are stored but not counted: stored >= accepted.
        print(
            f"    {ENDPOINT_LABELS[name]}: accepted {accepted}, stored {stored}, lost {max(0, accepted - stored)}"
        )
        best = max(
            servers, key=lambda kind: _ok(name, results[(kind, name)]) / (results[(kind, name)].seconds or 1)
        )
        rate = _ok(name, results[(best, name)]) / (results[(best, name)].seconds or 1)
        p99 = results[(best, name)].p99_ms
        label = (
            f"WSGI, {options.workers} sync workers"
            if best == "wsgi"
            else f"ASGI, {options.asgi_workers} uvicorn workers"
        )
        checks.append(
            f"{ENDPOINT_LABELS[name].split()[1]} >= {TARGET_RPS:,} req/s with p99 < {TARGET_P99_MS:.0f} ms "
            f"{'OK' if rate >= TARGET_RPS and p99 < TARGET_P99_MS else 'MISSED'} "
            f"({rate:,.0f} 2xx/s, p99 {p99:.1f} ms, {label})"
        )
    for kind, (workers, master) in peak.items():
        print(
            f"    {SERVER_LABELS[kind]} web workers' peak RSS: max {max(workers, default=0) / 1024:.0f} MiB per worker, "
            f"{sum(workers) / 1024:.0f} MiB for {len(workers)} workers (master {master / 1024:.0f} MiB)"
        )
    print("    targets: " + "; ".join(checks))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=8,
        help="(a) per measurement; (b) per phase, in total over the rounds (default 8)",
    )
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument(
        "--customers", type=int, default=100, help="customers (meters) the events spread over"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="(b) alternating slices of the phases (default 3)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="(b) seconds of warm-up per phase (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="(b) concurrent connections (default 16)")
    parser.add_argument(
        "--clients", type=int, default=8, help="(b) API keys, i.e. rate-limit buckets (default 8)"
    )
    parser.add_argument("--workers", type=int, default=4, help="(b) gunicorn sync workers of the WSGI server")
    parser.add_argument(
        "--asgi",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="(b) also measure an ASGI server (config.asgi on uvicorn workers; default on)",
    )
    parser.add_argument("--asgi-workers", type=int, default=2, help="(b) uvicorn workers of the ASGI server")
    parser.add_argument("--max-requests", type=int, default=200_000, help="(b) cap per slice (Python client)")
    parser.add_argument(
        "--python-client", action="store_true", help="(b) the Python client even if wrk exists"
    )
    parser.add_argument("--skip-batches", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    options = parser.parse_args()
    setup_django()
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("bench/ingest.py needs PostgreSQL: set DATABASE_URL=postgres://…")
    print(
        f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores "
        "(the CPU is shared: compare ratios, not absolute figures)"
    )
    if not options.skip_batches:
        bench_batches(options.seconds, options.pgbench_seconds, options.customers)
    if not options.skip_http:
        connection.close()
        bench_http(options)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
