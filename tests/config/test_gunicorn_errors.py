"""No request ends in one of gunicorn's own HTML pages (issue 18, part 4): a real gunicorn
started with ``config/gunicorn_conf.py`` as ``make run`` starts it answers an overlong request
line, an overlong header, too many headers and an unparsable request with the API's JSON error;
under uvicorn workers (the ASGI tier) they are the app's JSON or uvicorn's plain text, never HTML."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module", params=["sync", "gthread", "uvicorn"])
def server(request, tmp_path_factory):
    port = free_port()
    worker = {
        "sync": ["config.wsgi"],
        "gthread": ["config.wsgi", "--threads", "2"],
        "uvicorn": ["config.asgi:application", "-k", "uvicorn.workers.UvicornWorker"],
    }[request.param]
    env = {**os.environ, "VAR_DIR": str(tmp_path_factory.mktemp("var")), "DEBUG": "false"}
    process = subprocess.Popen(
        [GUNICORN, "-c", "python:config.gunicorn_conf", *worker, "-b", f"127.0.0.1:{port}", "-w", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            status, _, _ = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        except OSError:
            status = None  # not listening yet
        if status == 200:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gunicorn did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.3)
    yield request.param, port
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


OVERLONG_LINE = b"GET /meter-types?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
OVERLONG_HEADER = b"GET /meter-types HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"
MANY_HEADERS = (
    b"GET /meter-types HTTP/1.1\r\nHost: localhost\r\n"
    + b"".join(b"X-H%d: v\r\n" % n for n in range(150))
    + b"\r\n"
)
GARBAGE = b"NOT A REQUEST\r\n\r\n"


@pytest.mark.parametrize(
    "raw, status, code",
    [
        (OVERLONG_LINE, 414, "URI_TOO_LONG"),
        (OVERLONG_HEADER, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE"),
        (MANY_HEADERS, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE"),
        (GARBAGE, 400, "BAD_REQUEST"),
    ],
    ids=["request-line", "header-size", "header-count", "garbage"],
)
def test_gunicorns_own_answers_are_never_html(server, raw, status, code):
    kind, port = server
    answered, headers, body = exchange(port, raw)
    assert b"<html" not in body.lower()
    assert "html" not in headers.get("content-type", "")
    if kind == "uvicorn":
        # uvicorn (httptools) has no line limit of its own: what it parses reaches the app, which
        # answers its JSON error; what it cannot parse it refuses in plain text.
        assert 400 <= answered < 500
        assert headers["content-type"].split(";")[0] in ("application/json", "text/plain")
        return
    assert answered == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"code": code, "message": json.loads(body)["message"], "details": []}


def test_a_request_within_the_limits_reaches_the_app(server):
    _, port = server
    status, headers, body = exchange(
        port,
        b"GET /meter-types?x=" + b"a" * 4000 + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    assert status == 401  # the app's own answer: no token
    assert json.loads(body)["code"] == "UNAUTHORIZED"
