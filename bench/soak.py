"""Soak: mixed load at half the measured capacity for N minutes, with meters reset every minute.

    DATABASE_URL=postgres://… REDIS_URL=redis://… CELERY_BROKER_URL=redis://… \\
        .venv/bin/python bench/soak.py [--minutes 10] [--clients 4]

Runs gunicorn (2 sync workers), a real Celery worker and beat (the DatabaseScheduler, whose
every-minute reset sweep is installed by migration) on PostgreSQL and Redis. The load is a
round-robin of: Amberflo ingest (POST /ingest), send data, report usage, a meter-types list
(GET /meter-types) and an admin changelist page. Each client thread has its own token and API key,
as separate clients would (rate limits are per client: one shared token would meet the
meter-types limit, 20/s, once the machine is fast enough). The meter type resets every minute ("* * * * *").
First the capacity of the mix is measured for 10 s with closed-loop clients; then the soak sends
requests at half of it, paced. Printed: the error count (target 0; anything not 2xx or a network
error), p50/p99 latency, requests sent, metered records written (resets happened), and the RSS
of the web workers and of the Celery worker at start and end (target: no growth beyond 10 %).
The bench account is deleted first, so runs can be repeated. Figures depend on the shared machine.
"""

from __future__ import annotations

import argparse
import http.client
import http.cookiejar
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BIN,
    ROOT,
    Server,
    children_of,
    django_setup,
    ensure_database,
    migrate,
    percentile,
    require_postgres_and_redis,
)

ACCOUNT = "bench-soak"
USERS = 50


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mb(pid: int) -> float:
    return rss_mb(pid) + sum(rss_mb(child) for child in children_of(pid))


def setup(clients: int) -> dict:
    from django.contrib.auth import get_user_model

    from accounts import services as account_services
    from accounts.models import Account
    from collection import services as collection_services
    from metering import services as metering_services
    from metering.models import Meter, MeterType

    old = Account.objects.filter(name=ACCOUNT).first()
    if old is not None:
        Meter.objects.filter(account=old).delete()
        MeterType.objects.filter(account=old).delete()
        old.delete()
    account = account_services.account_get_or_create(name=ACCOUNT)
    tokens, api_keys = [], []
    for index in range(clients):  # tokens live an hour: long enough for any soak up to 55 minutes
        access, secret = account_services.application_access_create(
            account=account, name=f"soak-{index}", scopes=["all"]
        )
        tokens.append(
            account_services.access_token_issue(client_id=access.client_id, client_secret=secret).access_token
        )
        api_keys.append(account_services.api_key_create(account=account, name=f"soak-{index}")[1])
    meter_type = metering_services.meter_type_create(
        account_id=account.pk,
        name="Soak calls",
        unit="calls",
        aggregation="SUM",
        reset_cron="* * * * *",
        timezone="Etc/UTC",
        api_name="soak-calls",
    )
    for index in range(USERS):
        metering_services.meter_create(
            account_id=account.pk, meter_type_id=meter_type.pk, meter_key="default", user_id=f"user-{index}"
        )
    collector = collection_services.collector_create(account_id=account.pk, name="soak")
    collection_services.collector_provision(collector_id=collector.pk)
    user_model = get_user_model()
    user_model.objects.filter(username="soak-admin").delete()
    user_model.objects.create_superuser(username="soak-admin", password="soak-admin-pw-1")
    return {
        "account": account,
        "tokens": tokens,
        "api_keys": api_keys,
        "collector": str(collector.pk),
        "meter_type": meter_type,
    }


class Client:
    """One keep-alive-less HTTP client with its own token and API key, and a logged-in admin session."""

    def __init__(self, base_url: str, context: dict, index: int):
        self.base = base_url
        self.context = context
        self.token = context["tokens"][index]
        self.api_key = context["api_keys"][index]
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.opener.open(f"{base_url}/admin/login/", timeout=10).read()
        csrf = next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")
        form = urllib.parse.urlencode(
            {
                "username": "soak-admin",
                "password": "soak-admin-pw-1",
                "csrfmiddlewaretoken": csrf,
                "next": "/admin/",
            }
        ).encode()
        login = urllib.request.Request(
            f"{base_url}/admin/login/", data=form, headers={"Referer": f"{base_url}/admin/"}
        )
        self.opener.open(login, timeout=10).read()
        self.session_cookie = "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.cookies)
        self.step = 0

    def one(self) -> tuple[str, int, float]:
        self.step += 1
        user = f"user-{self.step % USERS}"
        bearer = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        kind = ("ingest", "send", "report", "usage", "admin")[self.step % 5]
        if kind == "ingest":
            method, path, headers = (
                "POST",
                "/ingest",
                {"X-API-KEY": self.api_key, "Content-Type": "application/json"},
            )
            body = json.dumps(
                [
                    {
                        "meterApiName": "soak-calls",
                        "customerId": user,
                        "meterValue": 1,
                        "meterTimeInMillis": int(time.time() * 1000),
                        "uniqueId": uuid.uuid4().hex,
                    }
                ]
            )
        elif kind == "send":
            method, path, headers = (
                "POST",
                f"/online-collection/collectors/{self.context['collector']}/data",
                bearer,
            )
            body = json.dumps({"data": {"user": user, "n": self.step}})
        elif kind == "report":
            method, path, headers = (
                "POST",
                "/billing/meters/usage",
                {**bearer, "Idempotency-Key": uuid.uuid4().hex},
            )
            body = json.dumps({"value": 1, "customerId": user, "meterName": "soak-calls"})
        elif kind == "usage":
            method, path, headers, body = "GET", "/meter-types?limit=10", bearer, None
        else:
            method, path, headers, body = (
                "GET",
                "/admin/metering/meter/",
                {"Cookie": self.session_cookie},
                None,
            )
        parts = urllib.parse.urlsplit(self.base)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except OSError:
            status = 0
        finally:
            connection.close()
        return kind, status, time.perf_counter() - started


def run_clients(base_url: str, context: dict, clients: int, seconds: float, rate: float | None) -> list:
    """``clients`` threads for ``seconds``; paced to ``rate`` requests/s in all when given."""
    results: list = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(index: int) -> None:
        client = Client(base_url, context, index)
        interval = clients / rate if rate else 0.0
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            answer = client.one()
            with lock:
                results.append(answer)
            if interval:
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)

    threads = [threading.Thread(target=loop, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return results


def celery(kind: str, env: dict, log_dir: Path) -> subprocess.Popen:
    command = [str(BIN / "python"), "-m", "celery", "-A", "config", kind, "--loglevel=WARNING"]
    if kind == "worker":
        command += ["--pool=solo", "--without-heartbeat", "--without-gossip", "--without-mingle"]
    else:
        command += ["--schedule", str(log_dir / "beat-schedule")]
    log = (log_dir / f"{kind}.log").open("ab")
    return subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log, start_new_session=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    env = require_postgres_and_redis()
    ensure_database(env["DATABASE_URL"])
    migrate(env)
    django_setup(env)
    context = setup(args.clients)
    log_dir = Path(os.environ.get("SOAK_LOG_DIR", "/tmp"))
    from metering.models import MeteredRecord

    processes = [celery("worker", env, log_dir), celery("beat", env, log_dir)]
    try:
        with Server(workers=2, env=env) as server:
            capacity_results = run_clients(server.base_url, context, args.clients, 10.0, None)
            capacity = len(capacity_results) / 10.0
            rate = capacity / 2
            print(
                f"capacity (closed loop, {args.clients} clients, 10 s): {capacity:.1f} req/s; soak at {rate:.1f}"
            )
            time.sleep(2)
            web_start, worker_start = tree_rss_mb(server.process.pid), rss_mb(processes[0].pid)
            results = run_clients(server.base_url, context, args.clients, args.minutes * 60, rate)
            time.sleep(2)
            web_end, worker_end = tree_rss_mb(server.process.pid), rss_mb(processes[0].pid)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)

    errors = [(kind, status) for kind, status, _ in results if not 200 <= status < 300]
    latencies = sorted(elapsed for _, _, elapsed in results)
    by_kind: dict[str, int] = {}
    for kind, _, _ in results:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    flushed = MeteredRecord.objects.filter(account=context["account"]).count()
    print(
        f"requests: {len(results)} in {args.minutes:g} min ({len(results) / (args.minutes * 60):.1f}/s) {by_kind}"
    )
    print(f"errors: {len(errors)} {sorted(set(errors))[:10]}")
    print(
        f"latency p50 {percentile(latencies, 50) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms"
    )
    print(f"metered records written by the every-minute resets: {flushed}")
    print(
        f"web RSS (master + workers): {web_start:.1f} MB -> {web_end:.1f} MB ({(web_end / web_start - 1) * 100:+.1f} %)"
    )
    print(
        f"worker RSS: {worker_start:.1f} MB -> {worker_end:.1f} MB ({(worker_end / worker_start - 1) * 100:+.1f} %)"
    )


if __name__ == "__main__":
    main()
