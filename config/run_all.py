"""``make run``: web + Celery worker + beat in the foreground; Ctrl-C stops all three.

Embedded default: gunicorn, a solo-pool worker and beat sharing the SQLite file and the
file-system broker in ``var/``. With DATABASE_URL / CELERY_BROKER_URL set, the same processes
run against PostgreSQL and Redis.

``--demo``: first refresh the demo account's credentials (``manage.py bootstrap_demo``), then
print them once the web server answers, after the processes' start-up lines, so they do not
scroll away. The worker and beat log at ``WORKER_LOG_LEVEL`` (default WARNING: what needs a look,
not every task).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

BIN = os.path.dirname(sys.executable)
READY_SECONDS = 120  # how long the banner waits for the web server


def demo_banner(base_url: str) -> str:
    """The demo account's new credentials, as ``bootstrap_demo`` prints them."""
    done = subprocess.run(
        [sys.executable, "manage.py", "bootstrap_demo", "--base-url", base_url],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def web_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    base_url = f"http://{host}:{port}"
    banner = demo_banner(base_url) if "--demo" in sys.argv[1:] else None
    worker_log_level = os.environ.get("WORKER_LOG_LEVEL", "warning")
    web_workers = os.environ.get("WEB_CONCURRENCY", "2")
    # More than 1: gthread workers with keep-alive (bench/send_data.py: ~35 % more send data per
    # second on PostgreSQL than sync workers on 2 cores).
    web_threads = os.environ.get("WEB_THREADS", "1")
    # WEB_SERVER=asgi: config.asgi on uvicorn workers (the hot endpoints' event-loop fast paths; README).
    if os.environ.get("WEB_SERVER", "wsgi") == "asgi":
        web_app = ["config.asgi:application", "--worker-class", "uvicorn.workers.UvicornWorker"]
    else:
        web_app = ["config.wsgi", "--threads", web_threads]
    # Below INFO the worker and beat skip their start-up banners too (they would print after the
    # credentials and push them off screen).
    quiet = ["--quiet"] if worker_log_level.lower() in ("warning", "error", "critical") else []
    commands = {
        "web": [
            os.path.join(BIN, "gunicorn"),
            # Limits, timeout, and gunicorn's own error answers as JSON (config/gunicorn_conf.py).
            "-c",
            "python:config.gunicorn_conf",
            *web_app,
            "-b",
            f"{host}:{port}",
            "-w",
            web_workers,
            "--access-logfile",
            "-",
        ],
        "worker": [
            os.path.join(BIN, "celery"),
            "-A",
            "config",
            *quiet,
            "worker",
            "-l",
            worker_log_level,
            "--pool",
            "solo",
            "-Q",
            "celery",
        ],
        "beat": [
            os.path.join(BIN, "celery"),
            "-A",
            "config",
            *quiet,
            "beat",
            "-l",
            worker_log_level,
            "-S",
            "django_celery_beat.schedulers:DatabaseScheduler",
        ],
    }
    # Web and worker processes share one metrics directory, so /metrics aggregates every gunicorn
    # worker and counts what the Celery worker does too (records metered by streams).
    metrics_dir = os.path.join(os.environ.get("VAR_DIR", "var"), "metrics")
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    web_env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": os.path.abspath(metrics_dir)}
    processes = {
        name: subprocess.Popen(cmd, env=web_env if name in ("web", "worker") else None)
        for name, cmd in commands.items()
    }
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    started = time.monotonic()
    while not stopping:
        if banner is not None and time.monotonic() - started < READY_SECONDS and web_ready(base_url):
            print(banner, flush=True)
            banner = None
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"run_all: {name} exited with {process.returncode}; stopping the others", flush=True)
                exit_code = process.returncode or 1
                stopping = True
        time.sleep(0.5)
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.time() + 15
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
