"""A real HTTP receiver on 127.0.0.1 (http.server in a thread) and fast webhook settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from config.celery import app as celery_app


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    delay: float = 0.0


class Receiver:
    """Records every request; answers from ``script`` (one Answer per request, the last one repeated)."""

    def __init__(self, script: list[Answer] | Callable[[int], Answer] | None = None):
        self.script = script or [Answer()]
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    index = len(receiver.requests)
                    receiver.requests.append(
                        Received(
                            "POST",
                            self.path,
                            {name.lower(): value for name, value in self.headers.items()},
                            body,
                        )
                    )
                answer = receiver.answer(index)
                if answer.delay:
                    time.sleep(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def answer(self, index: int) -> Answer:
        if callable(self.script):
            return self.script(index)
        return self.script[min(index, len(self.script) - 1)]

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    started: list[Receiver] = []

    def make(script=None) -> Receiver:
        receiver = Receiver(script).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def fast_webhooks(settings):
    """Tiny timeouts and no backoff, so a test can walk a delivery through all its attempts."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    settings.WEBHOOK_MAX_ATTEMPTS = 8
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 0.0
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 0.0
    settings.WEBHOOK_SWEEP_BATCH_SIZE = 100
    settings.WEBHOOK_SWEEP_TIME_BUDGET_SECONDS = 20.0
    return settings


@pytest.fixture
def allow_private(settings):
    """The local receiver lives on 127.0.0.1: allow private targets for tests that deliver to it."""
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    return settings


@pytest.fixture
def refuse_private(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = False
    return settings


@pytest.fixture
def celery_eager():
    """Tasks enqueued with .delay() run at once in this process (on_commit callbacks included)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def signature_is_valid(secret: str, received: Received) -> bool:
    """A receiver's check, written from the Standard Webhooks spec, independently of the service."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (
        f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}.".encode() + received.body
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(signature, expected)
        for version, _, signature in (
            item.partition(",") for item in received.headers["webhook-signature"].split()
        )
    )
