"""The SSRF guard: refused at registration and again at send time; no redirects; a total deadline."""

import datetime
import ipaddress
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from notifications import outbound, services
from notifications.exceptions import TargetNotAllowed
from notifications.models import Delivery
from tests.notifications.conftest import Answer

REFUSED_URLS = [
    "http://127.0.0.1/hook",  # loopback
    "http://127.1.2.3:8080/hook",
    "http://[::1]/hook",
    "http://localhost/hook",  # a name resolving to loopback
    "http://localhost:8000/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/hook",  # … and in hex
    "http://10.0.0.5/hook",  # RFC 1918
    "http://172.16.3.4/hook",
    "http://192.168.1.10/hook",
    "http://[fc00::1]/hook",  # unique local
    "http://[fd12:3456::1]/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "http://169.254.1.1/hook",
    "http://[fe80::1]/hook",
    "http://0.0.0.0/hook",  # unspecified
    "http://[::]/hook",
    "http://100.64.0.1/hook",  # CGNAT
    "http://224.0.0.1/hook",  # multicast
    "http://[ff02::1]/hook",
    "http://240.0.0.1/hook",  # reserved
    "http://255.255.255.255/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[::ffff:169.254.169.254]/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of the metadata address
    "http://[2002:7f00:1::]/hook",  # 6to4 of loopback
    "ftp://93.184.215.14/file",  # not http(s)
    "file:///etc/passwd",
    "gopher://93.184.215.14/",
    "http://user:pass@93.184.215.14/hook",  # credentials in the URL
    "http:///hook",  # no host
    "http://93.184.215.14:99999/hook",  # bad port
    "http://93.184.215.14/ho ok",  # whitespace
]
PUBLIC_URLS = [
    "https://93.184.215.14/hooks/usage",
    "http://8.8.8.8:8080/x?y=1",
    "https://[2606:4700::1111]/hook",
]


@pytest.fixture
def fake_dns(monkeypatch):
    """DNS is the outside world: a table of names, optionally changing between lookups (rebinding)."""
    table: dict[str, list[list[str]]] = {}
    real = outbound.resolve_host

    def resolve(host, port):
        if host not in table:
            return real(host, port)
        answers = table[host]
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(outbound, "resolve_host", resolve)
    return table


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_non_public_and_malformed_targets_are_refused(url, refuse_private):
    with pytest.raises(TargetNotAllowed) as refused:
        outbound.validate_target_url(url)
    assert refused.value.code == "TARGET_NOT_ALLOWED"
    assert refused.value.status == 400
    assert refused.value.details[0]["field"] == "url"


@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_public_addresses_are_allowed(url, refuse_private):
    target = outbound.validate_target_url(url)
    assert target.addresses == (str(ipaddress.ip_address(target.host)),)


def test_a_target_is_split_for_the_pinned_connection(refuse_private):
    target = outbound.validate_target_url("https://93.184.215.14/a/b?c=1&d=2#frag")
    assert (target.scheme, target.host, target.port, target.request_target) == (
        "https",
        "93.184.215.14",
        443,
        "/a/b?c=1&d=2",
    )


def test_a_name_is_refused_if_any_of_its_addresses_is_private(refuse_private, fake_dns):
    fake_dns["mixed.example.test"] = [["93.184.215.14", "10.0.0.7"]]
    fake_dns["public.example.test"] = [["93.184.215.14", "2606:4700::1111"]]
    with pytest.raises(TargetNotAllowed, match="non-public address"):
        outbound.validate_target_url("https://mixed.example.test/hook")
    assert outbound.validate_target_url("https://public.example.test/hook").addresses == (
        "93.184.215.14",
        "2606:4700::1111",
    )


def test_a_name_that_does_not_resolve_is_refused(refuse_private, monkeypatch):
    def no_such_host(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(outbound, "resolve_host", no_such_host)
    with pytest.raises(TargetNotAllowed, match="does not resolve"):
        outbound.validate_target_url("https://nowhere.example.test/hook")


def test_with_private_targets_allowed_registration_needs_no_dns(allow_private):
    target = outbound.validate_target_url("http://receiver.internal:8080/hook", resolve=False)
    assert (target.host, target.port, target.addresses) == ("receiver.internal", 8080, ())


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
    ],
)
def test_registration_refuses_private_targets(url, account, refuse_private):
    with pytest.raises(TargetNotAllowed):
        services.notification_endpoint_create(account=account, url=url, event_types=["threshold.crossed"])
    assert not account.notification_endpoints.exists()


@pytest.mark.django_db
def test_updating_to_a_private_url_is_refused_and_changes_nothing(account, refuse_private):
    endpoint, _ = services.notification_endpoint_create(
        account=account, url="https://93.184.215.14/h", event_types=["meter.flushed"]
    )
    with pytest.raises(TargetNotAllowed):
        services.notification_endpoint_update(endpoint=endpoint, url="http://10.1.1.1/h")
    endpoint.refresh_from_db()
    assert endpoint.url == "https://93.184.215.14/h"


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_send_time_refuses_a_private_target_registered_while_allowed(
    host, account, receiver_factory, settings, fast_webhooks
):
    receiver = receiver_factory()
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    services.notification_endpoint_create(
        account=account, url=f"http://{host}:{receiver.port}/hook", event_types=["meter.flushed"]
    )
    event = services.notification_publish(account_id=account.pk, event_type="meter.flushed", payload={"v": 1})
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = False  # the operator turns the guard on

    assert services.delivery_sweep_due() == 1
    delivery = Delivery.objects.get(event=event)
    assert delivery.status == "PENDING"
    assert delivery.last_status_code is None
    assert delivery.last_error.startswith("Target not allowed:")
    assert receiver.requests == []


@pytest.mark.django_db
def test_dns_rebinding_to_a_private_address_after_registration_is_refused_at_send_time(
    account, receiver_factory, refuse_private, fast_webhooks, fake_dns
):
    receiver = receiver_factory()
    # Public when registered, loopback when the worker resolves it (a rebinding attacker's DNS).
    fake_dns["rebind.example.test"] = [["93.184.215.14"], ["127.0.0.1"]]
    services.notification_endpoint_create(
        account=account, url=f"http://rebind.example.test:{receiver.port}/hook", event_types=["meter.flushed"]
    )
    event = services.notification_publish(account_id=account.pk, event_type="meter.flushed", payload={"v": 1})

    services.delivery_sweep_due()
    delivery = Delivery.objects.get(event=event)
    assert delivery.last_error == (
        "Target not allowed: The URL's host name resolves to a non-public address; targets must be public."
    )
    assert receiver.requests == []


def test_the_request_goes_to_the_checked_address_with_the_original_host_header(
    receiver_factory, allow_private, fake_dns
):
    receiver = receiver_factory()
    fake_dns["hooks.example.test"] = [["127.0.0.1"]]
    response = outbound.send(
        "POST",
        f"http://hooks.example.test:{receiver.port}/in?x=1",
        body=b"{}",
        headers={"Content-Type": "application/json"},
        timeout=2,
    )
    assert (response.status, response.address, response.body) == (200, "127.0.0.1", b"ok")
    request = receiver.requests[0]
    assert request.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert request.path == "/in?x=1"
    assert request.headers["user-agent"] == outbound.USER_AGENT


def test_redirects_are_not_followed_even_to_an_allowed_target(
    account, receiver_factory, allow_private, fast_webhooks, db
):
    inside = receiver_factory()
    redirecting = receiver_factory(
        [
            Answer(302, headers=(("Location", "http://169.254.169.254/latest/"),)),
            Answer(307, headers=(("Location", inside.url),)),
        ]
    )
    services.notification_endpoint_create(account=account, url=redirecting.url, event_types=["meter.flushed"])
    event = services.notification_publish(account_id=account.pk, event_type="meter.flushed", payload={"v": 1})

    services.delivery_sweep_due()
    services.delivery_sweep_due()

    delivery = Delivery.objects.get(event=event)
    assert list(delivery.attempts.values_list("status_code", "error")) == [
        (
            302,
            "HTTP 302: redirects are not followed (Location: http://169.254.169.254/latest/); "
            "update the endpoint URL.",
        ),
        (307, f"HTTP 307: redirects are not followed (Location: {inside.url}); update the endpoint URL."),
    ]
    assert delivery.status == "PENDING"
    assert len(redirecting.requests) == 2
    assert inside.requests == []


def test_the_timeout_is_a_total_deadline_even_for_a_receiver_that_trickles(allow_private):
    """Each byte arrives well within the timeout, so only a total deadline stops this receiver."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle():
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                if stop.is_set():
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    with pytest.raises(outbound.OutboundRequestFailed, match=r"^Timed out after 0.5 s.$"):
        outbound.send(
            "POST", f"http://127.0.0.1:{server.getsockname()[1]}/", body=b"{}", headers={}, timeout=0.5
        )
    elapsed = time.monotonic() - started
    stop.set()
    server.close()
    assert 0.45 < elapsed < 1.5


def _self_signed(hostname: str):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def test_https_sends_sni_and_verifies_the_certificate_for_the_url_host_not_the_ip(
    tmp_path, allow_private, fake_dns
):
    certificate_pem, key_pem = _self_signed("hooks.example.test")
    (tmp_path / "cert.pem").write_bytes(certificate_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    seen_server_names = []
    server_context.sni_callback = lambda sock, name, context: seen_server_names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once():
        connection, _ = listener.accept()
        try:
            with server_context.wrap_socket(connection, server_side=True) as tls:
                request = b""
                while not request.endswith(b"\r\n\r\n{}"):  # headers and the 2-byte body, in full
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    request += chunk
                tls.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        except (ssl.SSLError, OSError):
            pass  # the client refused the certificate (second half of the test)

    client_context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    fake_dns["hooks.example.test"] = [["127.0.0.1"]]
    fake_dns["other.example.test"] = [["127.0.0.1"]]
    server = threading.Thread(target=serve_once, daemon=True)
    server.start()
    response = outbound.send(
        "POST",
        f"https://hooks.example.test:{port}/hook",
        body=b"{}",
        headers={},
        timeout=3,
        ssl_context=client_context,
    )
    server.join(timeout=3)
    assert (response.status, response.address) == (204, "127.0.0.1")
    assert seen_server_names == ["hooks.example.test"]

    # The same server reached under another name: its certificate does not match, so no request.
    server = threading.Thread(target=serve_once, daemon=True)
    server.start()
    with pytest.raises(outbound.OutboundRequestFailed, match="CERTIFICATE_VERIFY_FAILED"):
        outbound.send(
            "POST",
            f"https://other.example.test:{port}/hook",
            body=b"{}",
            headers={},
            timeout=3,
            ssl_context=client_context,
        )
    server.join(timeout=3)
    listener.close()
