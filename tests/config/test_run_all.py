"""``make run``'s process (``python -m config.run_all --demo``) on the embedded default, as a newcomer
starts it: the demo credentials are printed once the web server answers, after the processes'
start-up lines, and the worker and beat keep their per-task chatter below WARNING."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def embedded_env(var_dir: Path, port: int) -> dict[str, str]:
    """The embedded default (SQLite and the file-system broker in ``var_dir``), as with no setup."""
    env = {name: value for name, value in os.environ.items() if name not in OUTSIDE}
    return {**env, "VAR_DIR": str(var_dir), "PORT": str(port), "DEBUG": "0"}


def test_make_run_prints_the_credentials_after_the_start_up_lines_and_workers_log_warnings_only(tmp_path):
    port = free_port()
    env = embedded_env(tmp_path, port)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "config.run_all", "--demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 150
        while not any("Admin:" in line for line in seen):
            assert time.monotonic() < deadline, "no credentials banner:\n" + "".join(seen[-40:])
            assert process.poll() is None, "run_all stopped:\n" + "".join(seen[-40:])
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        time.sleep(5)  # the worker and beat keep running: what they log now is their steady chatter
        while not lines.empty():
            seen.append(lines.get())
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    banner_at = next(n for n, line in enumerate(seen) if "Admin:" in line)
    listening_at = next(n for n, line in enumerate(seen) if "Listening at" in line)
    assert listening_at < banner_at  # the web server's start-up line came first
    banner = "".join(seen[banner_at : banner_at + 8])
    assert f"http://127.0.0.1:{port}/admin/" in banner and "password:" in banner and "client_secret" in banner
    assert sum("Admin:" in line for line in seen) == 1  # printed once
    chatter = [line for line in seen if ": INFO/" in line]  # Celery's format: "[time: INFO/MainProcess] …"
    assert chatter == []
    # Nor their start-up banners, which would come after the credentials.
    assert [line for line in seen if "[queues]" in line or "Configuration ->" in line] == []
    assert [line for line in seen if "No hostname was supplied" in line] == []
