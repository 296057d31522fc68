"""A notification endpoint's "Send test event" in a browser: a receiver on this machine gets one signed
test event, and the delivery page the button leads to says it was delivered."""

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from notifications import services as notification_services
from notifications.models import Delivery, EventType
from tests.ui.browser import overflowing, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver():
    """An HTTP server on 127.0.0.1 that answers 204 and keeps each request's headers and body."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({key.lower(): value for key, value in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format, *args):
            return None  # quiet: the test reads what was received instead

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", received
    finally:
        server.shutdown()
        server.server_close()


def test_send_a_test_event_to_an_endpoint_and_see_it_delivered(operator, receiver):
    page, account = operator.page, operator.account
    url, received = receiver
    endpoint, secret = notification_services.notification_endpoint_create(
        account=account, url=url, event_types=[EventType.THRESHOLD_CROSSED], description="alerts"
    )

    page.goto(f"/admin/notifications/notificationendpoint/{endpoint.pk}/change/")
    sent = []
    page.on("request", lambda request: sent.append(request.method))
    page.click("#send-test-event")

    expect(page.locator("ul.messagelist")).to_contain_text(f"Test event sent to {url}")
    delivery = Delivery.objects.get(endpoint=endpoint)
    assert page.url.endswith(f"/admin/notifications/delivery/{delivery.pk}/change/")
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("SUCCEEDED", 1, 204)
    expect(page.locator(".field-status .readonly")).to_have_text("Succeeded")
    assert overflowing(page) == []
    screenshot(page, "notification-endpoint-test-event")

    # The receiver got one event, signed with the endpoint's secret as every delivery is.
    assert len(received) == 1
    headers, body = received[0]
    document = json.loads(body)
    assert (document["type"], document["data"]["endpointId"]) == ("endpoint.test", str(endpoint.pk))
    assert headers["webhook-id"] == str(delivery.event_id)
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"

    # A reload of the delivery page sends nothing again (the button's POST was redirected).
    page.reload()
    assert "POST" in sent and sent.count("POST") == 1
    assert len(received) == 1
