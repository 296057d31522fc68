"""Driving an ASGI application in process, as uvicorn does (tests of ``config.hot.loop``).

The fast paths write on their own connections (asynchronous ones, and the usage applier's
thread), so their tests commit (``transaction=True``); ``in_one_loop`` closes those connections
after each run so that none outlives its test.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

from django.db import connections

from config.hot import database
from config.hot.django import LeanAsgiHandler
from config.hot.loop import _replaying
from metering.compat.ingest_asgi import applier


class Recorder:
    """The lean Django handler that the event loop hands requests over to, counting them."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.handler = LeanAsgiHandler()

    async def __call__(self, scope, receive, send):
        self.paths.append(scope["path"])
        await self.handler(scope, receive, send)


async def request(app, path: str, body: bytes, headers: dict[str, str] | None = None, query: bytes = b""):
    """One request through the ASGI application, as uvicorn makes it: (status, headers, JSON body)."""
    headers = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}
    answer: dict = {"body": b""}

    async def client_stays():  # what a client that waits for the answer sends next: nothing
        await asyncio.sleep(3600)

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {name.decode().lower(): value.decode() for name, value in message["headers"]}
        else:
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
    }
    # The whole body in one message, as uvicorn hands a small one over.
    await app(scope, _replaying(body, client_stays), send)
    return answer["status"], answer["headers"], json.loads(answer["body"] or b"null")


def in_one_loop(*requests):
    """Run coroutines concurrently on one event loop (one ASGI worker), closing its connections
    after. The loop runs in a thread of its own: a browser test's session may hold a running
    loop in the main thread."""

    async def run():
        try:
            return await asyncio.gather(*requests)
        finally:
            await database.close()
            await asyncio.get_running_loop().run_in_executor(None, applier.close)

    def worker():
        try:
            return asyncio.run(run())
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(worker).result()


def call(app, path: str, body: bytes, headers: dict[str, str] | None = None, query: bytes = b""):
    return in_one_loop(request(app, path, body, headers, query))[0]
