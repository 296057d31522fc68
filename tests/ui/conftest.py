"""Browser tests of the operator's path: logged-in staff users, the REST API over HTTP, screenshots.

The browser and its pages come from ``tests/ui/browser.py`` (one Chromium per session).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from playwright.sync_api import Page

from accounts import services as account_services
from accounts.models import Account
from config.celery import app as celery_app
from tests.ui import browser as browser_fixtures

# The shared browser fixtures (tests/ui/browser.py), for the browser tests only.
browser = browser_fixtures.browser
browser_page = browser_fixtures.browser_page

PASSWORD = "pw-12345678"
# Every app an operator works in.
OPERATOR_APPS = ("accounts", "metering", "collection", "streams", "parameters", "notifications", "console")


@pytest.fixture(autouse=True)
def ui_settings(settings, tmp_path):
    """A cheap password hash for the test users (client secrets keep their own hasher); a parameter
    key of the test's own (never var/'s key file); webhooks to 127.0.0.1 allowed, one attempt each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]
    settings.PARAMETER_ENCRYPTION_KEYS = [Fernet.generate_key().decode("ascii")]
    settings.PARAMETER_KEY_FILE = str(tmp_path / "parameter_encryption.key")
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    return settings


@pytest.fixture(autouse=True)
def celery_eager():
    """Tasks enqueued after a commit (webhook deliveries) run at once, in this process."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def make_staff(account: Account, username: str):
    """A staff user of ``account`` who may view, add, change and delete in every operator app."""
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=OPERATOR_APPS))
    account_services.account_user_link(user=user, account=account)
    return user


def log_in(page: Page, username: str, *, then: str = "/admin/") -> None:
    page.goto(f"/admin/login/?next={then}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{then}")


@dataclass
class Operator:
    """A logged-in staff user of one account, with their browser page."""

    page: Page
    account: Account
    username: str


@pytest.fixture
def operator(browser_page, account) -> Operator:
    """Ann, staff of account "acme", logged in through the login form."""
    make_staff(account, "ann")
    log_in(browser_page, "ann")
    return Operator(page=browser_page, account=account, username="ann")


@dataclass
class ApiAnswer:
    status: int
    body: Any


class Api:
    """The REST API over real HTTP (urllib) against the live server, with a bearer token."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.token: str | None = None

    def call(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> ApiAnswer:
        """``headers`` are added (an ``X-API-KEY`` instead of the bearer token, say)."""
        sent = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token and not (headers and "X-API-KEY" in headers):
            sent["Authorization"] = f"Bearer {self.token}"
        headers = sent | (headers or {})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return ApiAnswer(response.status, json.loads(response.read() or b"null"))
        except urllib.error.HTTPError as error:
            return ApiAnswer(error.code, json.loads(error.read() or b"null"))

    def log_in(self, client_id: str, client_secret: str) -> ApiAnswer:
        answer = self.call(
            "POST",
            "/oauth/token",
            {
                "client_id": client_id,
                "client_secret": client_secret,
                "grant_type": "client_credentials",
                "audience": self.base_url + "/",
            },
        )
        assert answer.status == 200, answer.body
        self.token = answer.body["access_token"]
        return answer


@pytest.fixture
def http_api(live_server) -> Api:
    """The REST API as a client outside the process calls it."""
    return Api(live_server.url)
