"""SSRF-safe outbound HTTP: webhooks now, the stream engine's httpForwarder later.

Every URL a tenant gives us is checked twice: when it is registered (``validate_target_url``)
and again at every send (``send``), because DNS can change in between. A target is refused
unless its scheme is http or https and every address its host is or resolves to is public:
not loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 including the cloud metadata
address 169.254.169.254, fe80::/10), unspecified, multicast, reserved, documentation or CGNAT
(100.64/10), also when hidden in an IPv6 form (IPv4-mapped, 6to4, Teredo, NAT64).
``settings.OUTBOUND_ALLOW_PRIVATE_TARGETS`` turns the address check off (development and tests).

To beat DNS rebinding the request goes to the very address that was checked: the connection is
opened to that IP, while the Host header and TLS SNI/certificate check use the URL's host name.
Redirects are never followed (a 3xx is answered to the caller as it is). Proxies from the
environment are not used (http.client ignores them), so no proxy can bypass the check. The
timeout is a total deadline for the whole exchange, not a per-read timeout, so a receiver that
trickles bytes cannot hold a worker.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from notifications.exceptions import TargetNotAllowed

ALLOWED_SCHEMES = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048
MAX_RESPONSE_BYTES = 64 * 1024
# A host with many addresses: connect to at most this many of them (all of them are checked).
MAX_ADDRESSES_TRIED = 3
USER_AGENT = "usage-metering-outbound/1.0"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges refused besides what ipaddress's own flags say; listed so the policy reads in one place.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network", includes the unspecified address
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
        "::/128",  # unspecified
        "::1/128",  # loopback
        "100::/64",  # discard
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Target:
    """A checked URL, split into what the connection needs."""

    url: str
    scheme: str
    host: str
    port: int
    request_target: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    duration_ms: int
    address: str


class OutboundRequestFailed(Exception):
    """The request got no HTTP answer: connection refused or reset, TLS failure, timeout."""


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the one place that asks DNS, the outside world)."""
    addresses: list[str] = []
    for _family, _type, _proto, _canonical, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    return addresses


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """An IPv4 address carried inside an IPv6 one, which a stack may route to the IPv4 host."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not address_is_public(embedded):
            return False
        if address.scope_id:
            return False
    flagged = (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )
    if flagged or any(
        address in network for network in _BLOCKED_NETWORKS if network.version == address.version
    ):
        return False
    return address.is_global


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolved_is_public(address: str) -> bool:
    parsed = _ip_literal(address)
    return parsed is not None and address_is_public(parsed)


def validate_target_url(url: str, *, resolve: bool = True) -> Target:
    """Check a URL for outbound use; raise ``TargetNotAllowed`` (400 ``TARGET_NOT_ALLOWED``) if refused.

    ``resolve=False`` skips DNS when private targets are allowed anyway (registration in
    development); with the check on, a host name is always resolved and every address checked.
    """
    if not isinstance(url, str) or not url:
        raise TargetNotAllowed("A URL is required.")
    if len(url) > MAX_URL_LENGTH:
        raise TargetNotAllowed(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(character.isspace() or ord(character) < 0x20 or ord(character) == 0x7F for character in url):
        raise TargetNotAllowed("The URL must not contain whitespace or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetNotAllowed("The URL is not valid.")
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise TargetNotAllowed("Only http and https URLs are allowed.")
    if parts.username is not None or parts.password is not None:
        raise TargetNotAllowed("The URL must not contain credentials (user:password@).")
    host = parts.hostname or ""
    if not host:
        raise TargetNotAllowed("The URL has no host.")
    try:
        host.encode("idna")
    except UnicodeError:
        raise TargetNotAllowed("The URL's host name is not valid.")
    port = port or ALLOWED_SCHEMES[scheme]
    request_target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    allow_private = settings.OUTBOUND_ALLOW_PRIVATE_TARGETS

    literal = _ip_literal(host)
    if literal is not None:
        if not allow_private and not address_is_public(literal):
            raise TargetNotAllowed(
                f"{literal} is not a public address; webhook and forwarder targets must be public."
            )
        addresses: tuple[str, ...] = (str(literal),)
    elif resolve or not allow_private:
        try:
            resolved = resolve_host(host, port)
        except (OSError, UnicodeError):
            raise TargetNotAllowed("The URL's host name does not resolve.")
        if not resolved:
            raise TargetNotAllowed("The URL's host name does not resolve.")
        # Every address must be public, or a second A record would let a request reach inside.
        if not allow_private and not all(_resolved_is_public(address) for address in resolved):
            raise TargetNotAllowed(
                "The URL's host name resolves to a non-public address; targets must be public."
            )
        addresses = tuple(resolved)
    else:
        addresses = ()
    return Target(
        url=url, scheme=scheme, host=host, port=port, request_target=request_target, addresses=addresses
    )


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a checked address; the Host header still names the URL's host."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.pinned_address = address

    def connect(self) -> None:
        self.sock = socket.create_connection(
            (self.pinned_address, self.port), self.timeout, self.source_address
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked address; SNI and certificate verification use the URL's host name."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self.pinned_address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.pinned_address, self.port), self.timeout, self.source_address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _Deadline:
    """Shuts the socket down when the total time is up, whatever phase the exchange is in."""

    def __init__(self, seconds: float):
        self.fired = threading.Event()
        self._connection: http.client.HTTPConnection | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def watch(self, connection: http.client.HTTPConnection) -> None:
        self._connection = connection

    def _fire(self) -> None:
        self.fired.set()
        sock = self._connection.sock if self._connection is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the exchange ended as the timer fired

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:500]


def send(
    method: str,
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> OutboundResponse:
    """Send one request to a checked address. Answers any HTTP status (3xx included, never followed).

    Raises ``TargetNotAllowed`` if the URL is refused now, ``OutboundRequestFailed`` if no HTTP
    answer came back within ``timeout`` seconds in total.
    """
    target = validate_target_url(url, resolve=True)
    started = time.monotonic()
    request_headers = {"User-Agent": USER_AGENT, **headers}
    last_error: BaseException | None = None
    with _Deadline(timeout) as deadline:
        for address in target.addresses[:MAX_ADDRESSES_TRIED]:
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                break
            if target.scheme == "https":
                connection: http.client.HTTPConnection = _PinnedHTTPSConnection(
                    target.host,
                    target.port,
                    address=address,
                    timeout=remaining,
                    context=ssl_context or ssl.create_default_context(),
                )
            else:
                connection = _PinnedHTTPConnection(
                    target.host, target.port, address=address, timeout=remaining
                )
            deadline.watch(connection)
            try:
                try:
                    connection.connect()
                except OSError as exc:
                    last_error = exc  # try the host's next address
                    continue
                connection.request(method, target.request_target, body=body, headers=request_headers)
                response = connection.getresponse()
                response_body = response.read(max_response_bytes)
                return OutboundResponse(
                    status=response.status,
                    headers={name.lower(): value for name, value in response.getheaders()},
                    body=response_body,
                    duration_ms=int((time.monotonic() - started) * 1000),
                    address=address,
                )
            except (OSError, http.client.HTTPException) as exc:
                if deadline.fired.is_set():
                    raise OutboundRequestFailed(f"Timed out after {timeout:g} s.")
                raise OutboundRequestFailed(_describe(exc))
            finally:
                connection.close()
    if deadline.fired.is_set() or last_error is None:
        raise OutboundRequestFailed(f"Timed out after {timeout:g} s.")
    raise OutboundRequestFailed(f"Could not connect: {_describe(last_error)}")
