"""Helpers shared by the HTTP benchmarks: a database to run on, gunicorn, and a load generator.

The load generator is ``wrk`` when it is installed (``apt-get install wrk``; a C client that
leaves the CPU to the server) and otherwise a multi-process Python client with keep-alive
``http.client`` connections. Both are bounded in time; the Python one also in request count.
Both can send extra headers and carry the tokens in another header (``X-API-KEY``), and vary each
request: ``@UNIQUE@`` in the body or a header value becomes a string unique to the request,
``@SLOT@`` the request's number modulo ``slots``; without them a request is prepared once.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# --- environment ---------------------------------------------------------------------------------


def require_postgres_and_redis() -> dict[str, str]:
    """The benchmarks measure the production path: PostgreSQL and Redis on loopback."""
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")) or not redis_url.startswith("redis://"):
        sys.exit(
            "Set DATABASE_URL=postgres://… and REDIS_URL=redis://… (the bench measures the production path)."
        )
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", redis_url),
    }


def ensure_database(database_url: str) -> None:
    """Create the PostgreSQL database named in the URL if it does not exist yet."""
    import psycopg

    parts = urllib.parse.urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [str(BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
    )


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def machine_note() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared machine)"


# --- gunicorn ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# A loaded, shared machine can take this long to import Django in every worker.
START_SECONDS = 90


class Server:
    """gunicorn on loopback (a free port unless one is given), stopped on exit. ``threads`` > 1
    runs gthread workers (HTTP keep-alive); 1 runs sync workers (a connection per request);
    ``asgi`` runs uvicorn workers (an event loop each, keep-alive). The application is
    ``config``'s with the benchmarks' ceiling views added to the hot path (``bench/wsgi.py``,
    ``bench/asgi.py``)."""

    def __init__(
        self, *, workers: int, env: dict[str, str], port: int = 0, threads: int = 1, asgi: bool = False
    ):
        self.port = port or free_port()
        self.workers = workers
        self.threads = threads
        self.asgi = asgi
        self.env = env
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        if self.asgi:
            application, worker_class = "bench.asgi:application", "uvicorn.workers.UvicornWorker"
        else:
            application, worker_class = "bench.wsgi:application", "gthread" if self.threads > 1 else "sync"
        command = [
            str(BIN / "gunicorn"),
            application,
            "-b",
            f"127.0.0.1:{self.port}",
            "-w",
            str(self.workers),
            "--worker-class",
            worker_class,
            "--threads",
            str(self.threads),
            "--keep-alive",
            "5",
            "--backlog",
            "2048",
            "--timeout",
            "30",
            "--log-level",
            "warning",
            "--worker-tmp-dir",
            "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
        ]
        env = {**os.environ, **self.env, "DEBUG": "0", "LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited during start-up")
            try:
                status, _ = request("GET", f"{self.base_url}/healthz")
            except OSError:  # not listening yet
                status = None
            if status == 200 and self.process.poll() is None:
                return self
            time.sleep(0.2)
        self.__exit__()  # never leave a server that did not come up behind
        raise RuntimeError(f"gunicorn did not answer /healthz within {START_SECONDS} s")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, parts.path or "/", body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- CPU accounting ------------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def children_of(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    children.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return children


def database_backend_pids() -> list[int]:
    """The PostgreSQL backends serving the bench database (but this process's own)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def _pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return pids


class CpuMeter:
    """CPU seconds spent on the benchmark itself: gunicorn master and workers, the PostgreSQL
    backends connected to the bench database, redis-server and the load generator (waited-for
    children). Neighbours on a shared machine slow a run down but barely change these counts,
    so CPU per request is the steadier figure; redis-server is shared and slightly overcounted."""

    def __init__(self, *, server_pid: int, database_backend_pids):
        self.server_pid = server_pid
        self.database_backend_pids = database_backend_pids

    def read(self) -> float:
        pids = [
            self.server_pid,
            *children_of(self.server_pid),
            *self.database_backend_pids(),
            *_pids_named("redis-server"),
        ]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return sum(_process_cpu_seconds(pid) for pid in pids) + children.ru_utime + children.ru_stime


# --- load ----------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    statuses: dict[str, int]
    p50_ms: float
    p99_ms: float
    socket_errors: int = 0
    extra: dict = field(default_factory=dict)

    cpu_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1e6 if self.requests else 0.0

    def count(self, status: int) -> int:
        return self.statuses.get(str(status), 0)


# Placeholders a body or an extra header value may hold; any of them makes every request built
# anew (with neither, the request is prepared once per thread, as before).
UNIQUE = "@UNIQUE@"  # a string no other request of the run carries (run prefix, thread, counter)
SLOT = "@SLOT@"  # the request's number modulo ``slots`` (spreads requests over a few ids)


def _token_value(token_header: str, token: str) -> str:
    """``Authorization`` carries ``Bearer <token>``; any other header (``X-API-KEY``) the token as is."""
    return f"Bearer {token}" if token_header.lower() == "authorization" else token


def _is_dynamic(body: bytes, headers: dict[str, str]) -> bool:
    texts = [body.decode() if body else "", *headers.values()]
    return any(UNIQUE in text or SLOT in text for text in texts)


_WRK_SCRIPT = """
local tokens = %(tokens)s
local body = %(body)s
local path = %(path)s
local method = %(method)s
local extra = %(headers)s
local token_header = %(token_header)s
local bearer = %(bearer)s
local dynamic = %(dynamic)s
local run = %(run)s
local slots = %(slots)d
local thread_count = %(threads)d
local created = 0
local threads = {}

function setup(thread)
  created = created + 1
  thread:set("index", created)
  table.insert(threads, thread)
end

local function headers_for(token)
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(extra) do headers[name] = value end
  if token ~= "" then headers[token_header] = (bearer and "Bearer " or "") .. token end
  return headers
end

local function expand(text, unique, slot)
  return (text:gsub("@UNIQUE@", unique):gsub("@SLOT@", slot))
end

function init(args)
  codes = {}
  -- This thread's tokens: every thread_count-th one from its index (a thread rotates through
  -- them request by request); with fewer tokens than threads, threads share them.
  mine = {}
  for i = index, #tokens, thread_count do table.insert(mine, tokens[i]) end
  if #mine == 0 then mine = {tokens[(index - 1) %% #tokens + 1]} end
  if not dynamic and #mine == 1 then
    prepared = wrk.format(method, path, headers_for(mine[1]), body)
  end
  prefix = run .. "-" .. index .. "-"
  counter = 0
end

function request()
  if prepared then return prepared end
  counter = counter + 1
  local unique, slot = prefix .. counter, tostring(counter %% slots)
  local headers = headers_for(mine[counter %% #mine + 1])
  if dynamic then
    for name, value in pairs(headers) do headers[name] = expand(value, unique, slot) end
    return wrk.format(method, path, headers, body and expand(body, unique, slot))
  end
  return wrk.format(method, path, headers, body)
end

function response(status, headers, response_body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("codes")) do
      totals[tostring(status)] = (totals[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(totals) do table.insert(parts, string.format('"%%s": %%d', status, n)) end
  local errors = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "statuses": {%%s}, '
    .. '"socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    table.concat(parts, ", "), errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def _lua_string(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    return "[==[" + text + "]==]"


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    *,
    url: str,
    method: str,
    body: bytes,
    tokens: list[str],
    threads: int,
    connections: int,
    seconds: int,
    headers: dict[str, str] | None = None,
    token_header: str = "Authorization",
    slots: int = 1,
) -> LoadResult:
    """wrk for ``seconds``. Each thread sends its tokens (every ``threads``-th, rotating per request)
    in ``token_header``; ``headers`` are sent too. See ``UNIQUE`` and ``SLOT`` for varying requests."""
    parts = urllib.parse.urlsplit(url)
    headers = headers or {}
    script = _WRK_SCRIPT % {
        "tokens": "{" + ", ".join(_lua_string(token) for token in tokens) + "}",
        "body": _lua_string(body) if body else "nil",
        "path": _lua_string(parts.path),
        "method": _lua_string(method),
        "headers": "{"
        + ", ".join(f"[ {_lua_string(name)} ] = {_lua_string(value)}" for name, value in headers.items())
        + "}",
        "token_header": _lua_string(token_header),
        "bearer": "true" if token_header.lower() == "authorization" else "false",
        "dynamic": "true" if _is_dynamic(body, headers) else "false",
        "run": _lua_string(secrets.token_hex(6)),
        "slots": max(1, slots),
        "threads": threads,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        script_path = handle.name
    try:
        completed = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                "--timeout",
                "5s",
                "-s",
                script_path,
                f"{parts.scheme}://{parts.netloc}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    finally:
        os.unlink(script_path)
    line = next(line for line in completed.stdout.splitlines() if line.startswith("WRK-RESULT "))
    data = json.loads(line.removeprefix("WRK-RESULT "))
    return LoadResult(
        tool=f"wrk -t{threads} -c{connections} -d{seconds}s",
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        statuses=data["statuses"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        socket_errors=data["socket_errors"],
    )


def _python_worker(
    url: str,
    method: str,
    body: bytes,
    token: str,
    connections: int,
    deadline: float,
    max_requests: int,
    queue,
    headers: dict[str, str] | None = None,
    token_header: str = "Authorization",
    slots: int = 1,
    unique_prefix: str = "",
) -> None:
    parts = urllib.parse.urlsplit(url)
    base = {"Content-Type": "application/json", **(headers or {})}
    if token:
        base[token_header] = _token_value(token_header, token)
    dynamic = _is_dynamic(body, base)
    request_headers, request_body = base, body or None
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    counter = 0
    pool = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=5) for _ in range(connections)]
    index = 0
    while time.monotonic() < deadline and len(latencies) < max_requests:
        connection = pool[index % connections]
        index += 1
        if dynamic:
            counter += 1
            unique, slot = f"{unique_prefix}{counter}", str(counter % max(1, slots))
            request_headers = {
                name: value.replace(UNIQUE, unique).replace(SLOT, slot) for name, value in base.items()
            }
            request_body = (
                body.replace(UNIQUE.encode(), unique.encode()).replace(SLOT.encode(), slot.encode()) or None
            )
        started = time.perf_counter()
        try:
            connection.request(method, parts.path, body=request_body, headers=request_headers)
            response = connection.getresponse()
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                connection.close()  # gunicorn's sync workers close after each response
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            continue
        latencies.append(time.perf_counter() - started)
        statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
    queue.put((latencies, statuses, errors))


def run_python_clients(
    *,
    url: str,
    method: str,
    body: bytes,
    tokens: list[str],
    processes: int,
    seconds: int,
    max_requests: int,
    headers: dict[str, str] | None = None,
    token_header: str = "Authorization",
    slots: int = 1,
) -> LoadResult:
    """Fallback when wrk is absent: ``processes`` client processes, each with its own token."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    started = time.monotonic()
    deadline = started + seconds
    run = secrets.token_hex(6)
    workers = [
        multiprocessing.Process(
            target=_python_worker,
            args=(url, method, body, tokens[i % len(tokens)], 1, deadline, max_requests // processes, queue),
            kwargs={
                "headers": headers,
                "token_header": token_header,
                "slots": slots,
                "unique_prefix": f"{run}-{i}-",
            },
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    for _ in workers:
        worker_latencies, worker_statuses, worker_errors = queue.get(timeout=seconds + 60)
        latencies.extend(worker_latencies)
        errors += worker_errors
        for status, count in worker_statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.join(timeout=10)
    latencies.sort()
    return LoadResult(
        tool=f"python http.client x{processes}",
        requests=len(latencies),
        seconds=elapsed,
        statuses=statuses,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        socket_errors=errors,
    )


def combine(results: list[LoadResult]) -> LoadResult:
    """Rounds of the same load as one result: totals for counts and time, the median round's p50 and
    the worst round's p99 (percentiles of separate runs cannot be merged exactly; this errs high)."""
    statuses: dict[str, int] = {}
    for result in results:
        for status, count in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    p50s = sorted(result.p50_ms for result in results)
    return LoadResult(
        tool=results[0].tool,
        requests=sum(r.requests for r in results),
        seconds=sum(r.seconds for r in results),
        statuses=statuses,
        p50_ms=p50s[len(p50s) // 2],
        p99_ms=max(r.p99_ms for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        extra={"rounds": [round(r.per_second) for r in results]},
        cpu_seconds=sum(r.cpu_seconds for r in results),
    )


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def run_load(
    *,
    url: str,
    method: str,
    body: bytes,
    tokens: list[str],
    connections: int,
    seconds: int,
    max_requests: int,
    force_python: bool = False,
    threads: int | None = None,
    headers: dict[str, str] | None = None,
    token_header: str = "Authorization",
    slots: int = 1,
) -> LoadResult:
    """wrk (``threads`` threads, default one per token) or the Python clients (one process per
    connection, each with one token). ``headers`` are sent with every request; ``token_header``
    carries the tokens (``Authorization: Bearer …`` by default; an empty token sends none). A body or
    header value holding ``UNIQUE`` or ``SLOT`` is rewritten per request (see those constants)."""
    if have_wrk() and not force_python:
        return run_wrk(
            url=url,
            method=method,
            body=body,
            tokens=tokens,
            threads=threads or len(tokens),
            connections=connections,
            seconds=seconds,
            headers=headers,
            token_header=token_header,
            slots=slots,
        )
    return run_python_clients(
        url=url,
        method=method,
        body=body,
        tokens=tokens,
        processes=connections,
        seconds=seconds,
        max_requests=max_requests,
        headers=headers,
        token_header=token_header,
        slots=slots,
    )
