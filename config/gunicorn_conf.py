"""gunicorn settings for the web process: ``gunicorn -c python:config.gunicorn_conf config.wsgi``
(``make run`` passes it; the ASGI tier takes the same ``-c``).

gunicorn answers some requests itself, before the application sees them: a request line or
header over its limits (414, 431), a request it cannot parse (400), and a request whose worker
timed out or crashed (500). Its own answer is an HTML page; here every one of them is the API's
JSON error body (``{"code", "message", "details"}``) instead, so no client ever gets HTML from
the API. Under the ASGI tier (uvicorn workers) uvicorn parses requests and answers malformed or
oversized ones with plain text, never HTML.
"""

from __future__ import annotations

import json
import os

from gunicorn import util

# Request line (method, path and query) and each header line: gunicorn's maximum (8190 bytes);
# longer ones are answered 414 / 431 with the JSON error below. At most 100 header fields.
limit_request_line = 8190
limit_request_field_size = 8190
limit_request_fields = 100
# A worker busy longer than this is killed and its request answered 500 (JSON). Work inside a
# request is bounded well below it: script budgets, the preview's limits, body size limits.
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))

_CODES = {
    400: ("BAD_REQUEST", "The request could not be parsed."),
    403: ("FORBIDDEN", "You are not allowed to do this."),
    414: ("URI_TOO_LONG", f"The request line is longer than {limit_request_line} bytes."),
    417: ("EXPECTATION_FAILED", "The Expect header cannot be met."),
    431: (
        "REQUEST_HEADER_FIELDS_TOO_LARGE",
        f"A header is longer than {limit_request_field_size} bytes, or there are more than"
        f" {limit_request_fields}.",
    ),
    500: ("INTERNAL_ERROR", "The request failed or took too long; it may be retried."),
    501: ("NOT_IMPLEMENTED", "The transfer coding is not supported."),
}


def json_error(status: int, reason: str) -> bytes:
    """The HTTP response gunicorn sends for an error of its own, as the API's JSON error."""
    code, message = _CODES.get(status, ("ERROR", reason))
    body = json.dumps({"code": code, "message": message, "details": []}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_json_error(sock, status_int, reason, mesg):
    util.write_nonblock(sock, json_error(int(status_int), reason))


def post_worker_init(worker):
    # gunicorn's workers write their own error pages through ``gunicorn.util.write_error``; in
    # this (worker) process every such page is the JSON error instead.
    util.write_error = write_json_error
