"""Secret-once pages in a browser: an API key and a notification endpoint's signing secret are shown
once, on the page the add form redirects to; a reload of that page shows no secret and submits
nothing. (The Application Access's page, with its rotation, is in test_operator_path.py.)"""

from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from accounts.credentials import checksum
from accounts.models import ApiKey
from notifications import services as notification_services
from notifications.models import NotificationEndpoint
from tests.ui.browser import overflowing, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def add_api_key(page: Page) -> None:
    page.goto("/admin/accounts/apikey/add/")
    page.fill("#id_name", "ingest")


def add_notification_endpoint(page: Page) -> None:
    page.goto("/admin/notifications/notificationendpoint/add/")
    page.fill("#id_url", "http://127.0.0.1:9/hooks/metering")
    page.fill("#id_description", "alerts")


@dataclass(frozen=True)
class SecretOncePage:
    name: str
    fill_add_form: object
    secret_selector: str
    made: type

    def stored_secret_matches(self, account, shown: str) -> bool:
        if self.made is ApiKey:
            key = ApiKey.objects.get(account=account)
            return shown.startswith(key.prefix) and key.key_checksum == checksum(shown)
        endpoint = NotificationEndpoint.objects.get(account=account)
        return notification_services.notification_endpoint_secret(endpoint=endpoint) == shown


PAGES = [
    SecretOncePage("api-key", add_api_key, "#api-key", ApiKey),
    SecretOncePage(
        "notification-endpoint", add_notification_endpoint, "#endpoint-secret", NotificationEndpoint
    ),
]


@pytest.mark.parametrize("secret_page", PAGES, ids=[secret_page.name for secret_page in PAGES])
def test_the_secret_is_shown_once_and_a_reload_shows_none_and_submits_nothing(operator, secret_page):
    page = operator.page
    secret_page.fill_add_form(page)
    page.click("input[name=_save]")

    secret = page.locator(secret_page.secret_selector).inner_text()
    assert len(secret) >= 30
    assert secret_page.stored_secret_matches(operator.account, secret)
    expect(page.locator(f"button.copy-button[data-copy='{secret_page.secret_selector}']")).to_be_visible()
    assert overflowing(page) == []
    screenshot(page, f"{secret_page.name}-secret")

    sent = []
    page.on("request", lambda request: sent.append(request.method))
    page.reload()
    expect(page.locator("#secret-gone")).to_be_visible()
    expect(page.locator(secret_page.secret_selector)).to_have_count(0)
    assert secret not in page.content()
    assert sent and set(sent) == {"GET"}  # the page and its static files; no POST again
    assert secret_page.made.objects.filter(account=operator.account).count() == 1
    assert overflowing(page) == []
    screenshot(page, f"{secret_page.name}-secret-reloaded")
