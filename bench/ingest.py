"""Ingestion benchmark of the usage ledger (bounded; prints its figures beside their ceilings).

    DATABASE_URL=postgres://… REDIS_URL=redis://… CELERY_BROKER_URL=redis://… \\
        .venv/bin/python bench/ingest.py [--seconds 8] [--customers 100] [--skip-http]

(a) Batches of 1,000 events through ``usage_apply`` (dedup, ledger, rollups, meters) in one and
    in two processes, beside the same SQL under pgbench (-c 1 and -c 2) in the same run: the
    batch's append statement alone, and the batch's whole statement sequence in one transaction.
(b) Single-event requests/s for ``POST /ingest`` and ``POST /billing/meters/usage`` under gunicorn
    (sync workers) with a multi-process loopback load generator, beside a minimal Django JSON
    view's rate in the same run; and the web workers' peak RSS.

Each run uses a new account, so it never counts into earlier runs' meters. PostgreSQL only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

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
    return [UsageInput(user_id=random.choice(customers), value=random.randint(1, 10), timestamp=now_ms,
                       meter_type_id=meter_type_id, idempotency_key=key) for key in keys], keys


def ingest_batches(account_id: str, meter_type_id: str, customers: list[str], seconds: float,
                   max_batches: int = 500) -> tuple[int, float, int]:
    """Apply batches for ``seconds`` (at most ``max_batches``). Returns (events, elapsed, accepted)."""
    setup_django()
    from django.db import connection

    from metering.ledger import usage_apply

    previous: list[str] = []
    events = accepted = 0
    started = time.perf_counter()
    for _ in range(max_batches):
        records, previous = _batch(uuid.UUID(meter_type_id), customers, previous, int(time.time() * 1000))
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
    with context.Pool(processes) as pool:
        results = pool.starmap(ingest_batches, [(account_id, meter_type_id, customers, seconds)] * processes)
    events = sum(r[0] for r in results)
    return events / max(r[1] for r in results), sum(r[2] for r in results)


def _capture_batch_sql(account_id, meter_type_id, customers) -> list[str]:
    """The SQL of one batch with its parameters inlined (for pgbench)."""
    from django.db import connection
    from psycopg import ClientCursor

    from metering.ledger import usage_apply

    captured: list[tuple[str, object]] = []

    def capture(execute, sql, params, many, context):
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
    return statements


def _pgbench(script: str, clients: int, seconds: int) -> float:
    from django.conf import settings

    database = settings.DATABASES["default"]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
        file.write(script)
    command = ["pgbench", "-n", "-M", "prepared", "-f", file.name, "-c", str(clients), "-j", str(clients),
               "-T", str(seconds), "-h", database["HOST"] or "127.0.0.1", "-p", str(database["PORT"] or 5432),
               "-U", database["USER"] or "postgres", database["NAME"]]
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
    meter_type = services.meter_type_create(account_id=account.pk, name="Bench calls", unit="calls",
                                            aggregation="SUM", reset_cron="0 0 1 * *", timezone="Etc/UTC")
    MeterType.objects.filter(pk=meter_type.pk).update(auto_create_meters=True)
    customers = [f"customer-{n}" for n in range(customer_count)]
    # Warm up: the customers' meters exist before the clock starts.
    records, _ = _batch(meter_type.pk, customers, [], int(time.time() * 1000))
    usage_apply(account_id=account.pk, records=records, source="api")

    print(f"(a) batches of {BATCH} events, {customer_count} customers, {DUPLICATE_SHARE:.0%} replayed keys")
    one, _ = _parallel(1, str(account.pk), str(meter_type.pk), customers, seconds)
    two, _ = _parallel(2, str(account.pk), str(meter_type.pk), customers, seconds)

    statements = _capture_batch_sql(account.pk, meter_type.pk, customers)
    keyed = [s.replace("r->>0 AS key", "((r->>0) || :p::text) AS key") for s in statements]
    variable = "\\set p random(1, 9223372036854775806)\n"
    append = variable + next(s for s in keyed if ":p::text" in s) + ";\n"
    whole = variable + "BEGIN;\n" + ";\n".join(keyed) + ";\nCOMMIT;\n"
    ceilings = {name: [_pgbench(script, clients, pgbench_seconds) * BATCH for clients in (1, 2)]
                for name, script in (("append", append), ("whole", whole))}
    print(f"    {'':38}{'1 process':>12}{'2 processes':>14}")
    print(f"    {'usage_apply (events/s)':38}{one:>12,.0f}{two:>14,.0f}")
    print(f"    {'pgbench: append statement (events/s)':38}{ceilings['append'][0]:>12,.0f}{ceilings['append'][1]:>14,.0f}")
    print(f"    {'pgbench: whole batch SQL (events/s)':38}{ceilings['whole'][0]:>12,.0f}{ceilings['whole'][1]:>14,.0f}")
    print(f"    statements per batch: {len(statements)} ({', '.join(s.split()[0] for s in statements)})")


# --- (b) single-event HTTP requests ---------------------------------------------------------------


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _load(port: int, kind: str, api_key: str, seconds: float, worker: int, connections: int) -> dict[int, int]:
    """One load-generator process: ``connections`` sockets in flight, a new one per request
    (gunicorn's sync workers close after each answer). Returns answers by status."""
    import selectors

    statuses: dict[int, int] = {}
    counter = 0

    def next_request() -> bytes:
        nonlocal counter
        counter += 1
        customer = f"customer-{counter % 100}"
        if kind == "minimal":
            return _request("GET", "/bench/minimal", {})
        unique = f"{worker}-{counter}-{uuid.uuid4().hex[:8]}"
        if kind == "ingest":
            body = json.dumps({"meterApiName": "bench-calls", "customerId": customer, "meterValue": 1,
                               "meterTimeInMillis": int(time.time() * 1000), "uniqueId": unique}).encode()
            return _request("POST", "/ingest", {"X-API-KEY": api_key}, body)
        body = json.dumps({"value": 1, "customerId": customer, "meterName": "bench-calls"}).encode()
        return _request("POST", "/billing/meters/usage", {"X-API-KEY": api_key, "Idempotency-Key": unique}, body)

    selector = selectors.DefaultSelector()

    def start() -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(next_request())
        selector.register(sock, selectors.EVENT_READ, bytearray())

    deadline = time.perf_counter() + seconds
    for _ in range(connections):
        start()
    while time.perf_counter() < deadline:
        for key, _ in selector.select(timeout=1):
            chunk = key.fileobj.recv(65536)
            if chunk:
                key.data.extend(chunk)
                continue
            selector.unregister(key.fileobj)
            key.fileobj.close()
            status = int(bytes(key.data[9:12]) or 0)
            statuses[status] = statuses.get(status, 0) + 1
            if time.perf_counter() < deadline:
                start()
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    return statuses


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _peak_rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) if match else 0


def bench_http(seconds: float, workers: int, load_processes: int, connections: int) -> None:
    from accounts.services import account_get_or_create, api_key_create
    from metering.compat import amberflo

    account = account_get_or_create(name=f"bench-http-{uuid.uuid4().hex[:8]}")
    amberflo.meter_definition_create(account_id=account.pk, meter_api_name="bench-calls",
                                     display_name="Bench calls", kind=amberflo.SUM_OF_ALL_USAGE)
    _, api_key = api_key_create(account=account, name="bench",
                                scopes=["usage-metering:ingest:usage", "meter-report"])
    port = _free_port()
    environment = {**os.environ, "BENCH_MINIMAL_VIEW": "1", "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "--workers", str(workers),
         "--worker-class", "sync", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT, env=environment, start_new_session=True)
    try:
        # Ready when every worker has booted (imported Django) and answers.
        for _ in range(300):
            time.sleep(0.2)
            if len(_children(server.pid)) < workers:
                continue
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                continue
            break
        time.sleep(2)
        context = multiprocessing.get_context("spawn")
        print(f"(b) single-event requests, gunicorn {workers} sync workers, load: {load_processes} processes x "
              f"{connections} connections, {seconds:.0f} s each")
        rates = {}
        for kind in ("minimal", "ingest", "report", "minimal"):
            # Warm-up: every worker booted and connected, statements prepared, credentials cached.
            with context.Pool(load_processes) as pool:
                pool.starmap(_load, [(port, kind, api_key, 2.0, n, connections) for n in range(load_processes)])
            with context.Pool(load_processes) as pool:
                results = pool.starmap(_load, [(port, kind, api_key, seconds, n, connections)
                                               for n in range(load_processes)])
            statuses: dict[int, int] = {}
            for result in results:
                for status, count in result.items():
                    statuses[status] = statuses.get(status, 0) + count
            ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
            rates.setdefault(kind, []).append(ok / seconds)
            other = {status: count for status, count in statuses.items() if not 200 <= status < 300}
            print(f"    {kind:8} {ok / seconds:>8,.0f} req/s (2xx)" + (f"  other answers: {other}" if other else ""))
        peak = {pid: _peak_rss_kib(pid) for pid in _children(server.pid)}
        print(f"    minimal view (mean of the runs before and after): {sum(rates['minimal']) / 2:,.0f} req/s")
        print(f"    /ingest: {rates['ingest'][0] / (sum(rates['minimal']) / 2):.0%} of it; "
              f"/billing/meters/usage: {rates['report'][0] / (sum(rates['minimal']) / 2):.0%}")
        print(f"    web workers' peak RSS: max {max(peak.values(), default=0) / 1024:.0f} MiB per worker, "
              f"{sum(peak.values()) / 1024:.0f} MiB for {len(peak)} workers "
              f"(master {_peak_rss_kib(server.pid) / 1024:.0f} MiB)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8, help="per measurement (default 8)")
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--customers", type=int, default=100, help="customers (meters) per batch run")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8, help="in flight per load process")
    parser.add_argument("--skip-batches", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    options = parser.parse_args()
    setup_django()
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("bench/ingest.py needs PostgreSQL: set DATABASE_URL=postgres://…")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores "
          "(the CPU is shared: compare ratios, not absolute figures)")
    if not options.skip_batches:
        bench_batches(options.seconds, options.pgbench_seconds, options.customers)
    if not options.skip_http:
        connection.close()
        bench_http(options.seconds, options.workers, options.load_processes, options.connections)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
