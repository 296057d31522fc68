"""SEAM: the one function through which the engine sends HTTP requests out (``httpForwarder``).

The SSRF-safe outbound client of the notifications app (``notifications/outbound.py``:
``validate_target_url`` and a send function) is being built in parallel; once merged, ``send``
here delegates to it. Until then this module applies the same rules itself:

- only ``http`` and ``https`` URLs, no credentials in the URL;
- the host is resolved once and EVERY address must be public: loopback, private, link-local,
  carrier-grade NAT, multicast, reserved and unspecified addresses are refused, unless
  ``settings.OUTBOUND_ALLOW_PRIVATE_TARGETS`` is true (tests, on-premises targets);
- the connection goes to the address that was checked (no second DNS lookup an attacker could
  answer differently), with the original host name for the Host header, SNI and certificate check;
- redirects are not followed (a redirect to a private address would bypass the check).

Error messages name the problem, never the resolved URL (it may hold a parameter's value).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings


class OutboundError(Exception):
    """The request was not made, or did not succeed."""


class OutboundRefused(OutboundError):
    """The target is not allowed (scheme, address)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str
    path: str


def private_targets_allowed() -> bool:
    return bool(getattr(settings, "OUTBOUND_ALLOW_PRIVATE_TARGETS", False))


def _address_refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def target_validate(url: str) -> Target:
    """Parse ``url`` and resolve its host; raise ``OutboundRefused`` when it may not be called."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("the URL is not valid")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundRefused("only http:// and https:// URLs are allowed")
    if parts.username or parts.password:
        raise OutboundRefused("credentials in the URL are not allowed; use a header")
    host = parts.hostname
    if not host:
        raise OutboundRefused("the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise OutboundError("the host name does not resolve")
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses:
        raise OutboundError("the host name does not resolve")
    if not private_targets_allowed() and any(_address_refused(address) for address in addresses):
        raise OutboundRefused("the target resolves to a loopback, private, link-local or reserved address")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=scheme, host=host, port=port, address=str(addresses[0]), path=path)


def send(*, method: str, url: str, headers: dict[str, str], body: bytes, timeout_seconds: float) -> int:
    """Send one request; return the 2xx status, or raise ``OutboundError``."""
    target = target_validate(url)
    host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    if ":" in target.host and not target.host.startswith("["):
        host_header = f"[{target.host}]" if target.port in (80, 443) else f"[{target.host}]:{target.port}"
    timeout = urllib3.Timeout(connect=min(timeout_seconds, 5.0), read=timeout_seconds)
    options = {"timeout": timeout, "retries": False, "maxsize": 1}
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(target.address, target.port, server_hostname=target.host,
                                           assert_hostname=target.host, cert_reqs="CERT_REQUIRED", **options)
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, **options)
    try:
        response = pool.urlopen(method, target.path, body=body, headers={**headers, "Host": host_header},
                                redirect=False, assert_same_host=False, preload_content=True)
    except urllib3.exceptions.HTTPError as exc:
        raise OutboundError(f"the request failed ({exc.__class__.__name__})")
    finally:
        pool.close()
    if not 200 <= response.status < 300:
        raise OutboundError(f"the target answered HTTP {response.status}")
    return response.status
