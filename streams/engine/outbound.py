"""The one function through which the engine sends HTTP requests out (``httpForwarder``).

It delegates to the notifications app's SSRF-safe client (``notifications/outbound.py``): only
http(s), no credentials in the URL, every resolved address public unless
``OUTBOUND_ALLOW_PRIVATE_TARGETS``, the connection pinned to the checked address, redirects never
followed, one total deadline. This module only adapts its errors to the engine's vocabulary.
Error messages name the problem, never the resolved URL (it may hold a parameter's value).
"""

from __future__ import annotations

from notifications import outbound as client
from notifications.exceptions import TargetNotAllowed


class OutboundError(Exception):
    """The request was not made, or did not succeed: ``status_code`` is the answer's status (none if
    no answer came), ``retry_after`` the seconds its ``Retry-After`` header asked for."""

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class OutboundRefused(OutboundError):
    """The target is not allowed (scheme, address)."""


def target_validate(url: str) -> client.Target:
    """Raise ``OutboundRefused`` when ``url`` may not be called."""
    try:
        return client.validate_target_url(url, resolve=True)
    except TargetNotAllowed as exc:
        raise OutboundRefused(exc.message)


def send(*, method: str, url: str, headers: dict[str, str], body: bytes, timeout_seconds: float) -> int:
    """Send one request; return the 2xx status, or raise ``OutboundError``."""
    try:
        response = client.send(method, url, body=body, headers=headers, timeout=timeout_seconds)
    except TargetNotAllowed as exc:
        raise OutboundRefused(exc.message)
    except client.OutboundRequestFailed as exc:
        raise OutboundError(f"the request failed ({exc})")
    if not 200 <= response.status < 300:
        raise OutboundError(
            f"the target answered HTTP {response.status}",
            status_code=response.status,
            retry_after=_retry_after(response.headers.get("retry-after", "")),
        )
    return response.status


def _retry_after(value: str) -> float | None:
    """``Retry-After`` in seconds (the delay form; a date is ignored), at most an hour."""
    value = value.strip()
    return min(float(value), 3600.0) if value.isdigit() else None
