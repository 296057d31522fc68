"""PostgreSQL restarted under load (issue 12, item 4b), on a PRIVATE PostgreSQL instance.

The shared cluster on 5432 is never touched: the test runs initdb into a temporary directory,
starts its own postmaster on a free loopback port (as the ``postgres`` user: postgres refuses to
run as root), migrates a database there and serves it with gunicorn. A thread sends report-usage
requests with unique idempotency keys while ``pg_ctl restart -m fast`` runs. Requests in the gap
get a JSON 503 with Retry-After, never a 500. Within 10 s of the restart the service answers 202
again, and it is not restarted. Every request that got a 202 is in the database, counted once.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from bench._common import Server, free_port, request

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")

pytestmark = pytest.mark.skipif(
    not (PG_BIN / "initdb").exists(), reason="PostgreSQL 15 server binaries missing"
)


def as_postgres(*command: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


@pytest.fixture
def private_postgres():
    directory = Path(tempfile.mkdtemp(prefix="rel-pg-"))
    if os.geteuid() == 0:
        os.chown(directory, pwd.getpwnam("postgres").pw_uid, -1)
    data, port = directory / "data", free_port()
    subprocess.run(
        as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    ctl = [
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(directory / "log"),
        "-w",
        "-t",
        "30",
        "-o",
        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off",
    ]
    subprocess.run(as_postgres(*ctl, "start"), check=True, capture_output=True, timeout=60)
    try:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True
        ) as connection:
            connection.execute("CREATE DATABASE metering")
        yield f"postgres://postgres@127.0.0.1:{port}/metering", ctl
    finally:
        subprocess.run(
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(directory, ignore_errors=True)


SETUP = """
import json
from accounts import services as a
from metering import services as m
account = a.account_get_or_create(name="pg-restart")
access, secret = a.application_access_create(account=account, name="load", scopes=["all"])
t = m.meter_type_create(account_id=account.pk, name="Calls", unit="calls", aggregation="SUM",
                        reset_cron="0 0 1 * *", timezone="Etc/UTC", api_name="calls")
m.meter_create(account_id=account.pk, meter_type_id=t.pk, meter_key="default", user_id="cus_1")
print(json.dumps({"clientId": access.client_id, "secret": secret}))
"""


def test_a_postgres_restart_mid_load_is_503_then_recovers_and_every_2xx_is_stored(private_postgres):
    url, ctl = private_postgres
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "RATE_LIMIT_ENABLED": "0",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=180
    )
    made = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SETUP],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    credentials = json.loads(made.stdout.strip().splitlines()[-1])

    with Server(
        workers=2,
        env={"DATABASE_URL": url, "REDIS_URL": "", "CELERY_BROKER_URL": "", "RATE_LIMIT_ENABLED": "0"},
    ) as server:
        status, body = request(
            "POST",
            f"{server.base_url}/oauth/token",
            json.dumps(
                {
                    "client_id": credentials["clientId"],
                    "client_secret": credentials["secret"],
                    "grant_type": "client_credentials",
                }
            ).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200, body
        token = json.loads(body)["access_token"]
        results: list[tuple[float, str, int, str | None]] = []
        stop = threading.Event()

        def load() -> None:
            number = 0
            while not stop.is_set() and number < 5000:
                number += 1
                key = f"load-{number}"
                sent = time.monotonic()
                try:
                    status, answer = request(
                        "POST",
                        f"{server.base_url}/billing/meters/usage",
                        json.dumps({"value": 1, "customerId": "cus_1", "meterName": "calls"}).encode(),
                        {
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/json",
                            "Idempotency-Key": key,
                        },
                    )
                except OSError as exc:
                    status, answer = 0, repr(exc)
                results.append((sent, key, status, answer if status not in (200, 202) else None))

        loader = threading.Thread(target=load)
        loader.start()
        try:
            time.sleep(1.0)
            restart_started = time.monotonic()
            subprocess.run(
                as_postgres(*ctl, "-m", "fast", "restart"), check=True, capture_output=True, timeout=60
            )
            restarted = time.monotonic()
            time.sleep(10.0)
        finally:
            stop.set()
            loader.join(timeout=30)
        assert server.process.poll() is None  # the service was never restarted

    statuses = {status for _, _, status, _ in results}
    refused = [answer for _, _, status, answer in results if status != 202]
    assert statuses <= {202, 503}, refused[:5]
    for answer in refused:
        assert json.loads(answer)["code"] == "SERVICE_UNAVAILABLE", answer
    before = [status for sent, _, status, _ in results if sent < restart_started]
    assert before and set(before) == {202}
    recovered = [sent for sent, _, status, _ in results if sent >= restarted and status == 202]
    assert recovered and recovered[0] - restarted < 10.0
    # The last seconds are all served: the service recovered by itself.
    assert {status for sent, _, status, _ in results if sent > restarted + 5.0} == {202}

    accepted = [key for _, key, status, _ in results if status == 202]
    with psycopg.connect(url.replace("postgres://", "postgresql://")) as connection:
        stored = [row[0] for row in connection.execute("SELECT idempotency_key FROM metering_usagerecord")]
        value = connection.execute("SELECT value FROM metering_meter").fetchone()[0]
    assert sorted(stored) == sorted(f"report:{key}" for key in accepted)
    assert value == len(accepted)
