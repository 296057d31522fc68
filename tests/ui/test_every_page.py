"""Every page of the console, at the widths people use: nothing sticks out of the viewport where no
scrollbar reaches it. The pages are found from the admin's own URLs (every registered model's list,
add and change pages, their history and delete confirmations, every custom admin view), so a page
added later is checked without touching this test; one screenshot of each lands in docs/screenshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, reverse
from playwright.sync_api import Page

from accounts import services as account_services
from billing import services as billing_services
from billing.models import Price, Product, Subscription
from metering import services as metering_services
from tests.ui.browser import overflowing, screenshot
from tests.ui.conftest import PASSWORD, log_in
from tests.ui.givens import given_operator_data

pytestmark = pytest.mark.django_db(transaction=True)

# Admin URLs that are not pages a person reads: a download, a fragment the meter type form fetches,
# a button's POST (send a test event), Django's plumbing (log out, autocomplete JSON, the JavaScript
# catalogue, "view on site" redirects).
NOT_PAGES = {
    "notifications_notificationendpoint_send_test",
    "logout",
    "autocomplete",
    "jsi18n",
    "view_on_site",
    "streams_stream_export",
    "metering_metertype_schedule_preview",
}


@dataclass(frozen=True)
class ConsolePage:
    name: str  # the screenshot's name; empty: none (the stock history and delete pages)
    url: str


def _first_object_id(model) -> str | None:
    first = model._default_manager.order_by("pk").first()
    return None if first is None else str(first.pk)


def console_pages() -> tuple[list[ConsolePage], set[str]]:
    """Every admin page with an object to show (the first of its model), and every admin URL name
    seen (to check none was left out)."""
    pages = [
        ConsolePage("page-dashboard", reverse("admin:index")),
        ConsolePage("page-usage-explorer", reverse("console-usage")),
        ConsolePage("page-password-change", reverse("admin:password_change")),
        ConsolePage("page-password-change-done", reverse("admin:password_change_done")),
    ]
    seen = {"index", "login", "password_change", "password_change_done", "app_list"}
    pages += [
        ConsolePage(f"page-app-{app_label}", reverse("admin:app_list", args=[app_label]))
        for app_label in sorted({model._meta.app_label for model in admin.site._registry})
    ]
    for model, model_admin in admin.site._registry.items():
        label = f"{model._meta.app_label}-{model._meta.model_name}"
        object_id = _first_object_id(model)
        for pattern in _named_patterns(model_admin.urls):
            name = pattern.name
            seen.add(name)
            if name in NOT_PAGES:
                continue
            kind = name.removeprefix(f"{model._meta.app_label}_{model._meta.model_name}_")
            kind = kind.removeprefix(f"{model._meta.app_label}_")
            needs_object = bool(pattern.pattern.regex.groupindex)
            if needs_object and object_id is None:
                continue
            url = reverse(f"admin:{name}", args=[object_id] if needs_object else [])
            shown = "" if kind in ("history", "delete") else f"page-{label}-{kind}"
            if not _may_open(model_admin, kind, model):
                continue
            pages.append(ConsolePage(shown, url))
    return pages, seen


def _may_open(model_admin, kind: str, model) -> bool:
    """Whether even a superuser gets the page (read-only lists have no add or delete pages)."""
    request = RequestFactory().get("/admin/")
    request.user = get_user_model()(is_superuser=True, is_staff=True, is_active=True)
    if kind == "add":
        return model_admin.has_add_permission(request)
    if kind == "delete":
        return model_admin.has_delete_permission(request, model._default_manager.order_by("pk").first())
    return True


def _named_patterns(patterns) -> list[URLPattern]:
    found: list[URLPattern] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _named_patterns(pattern.url_patterns)
        elif pattern.name:
            found.append(pattern)
    return found


def _admin_url_names() -> set[str]:
    return {pattern.name for pattern in _named_patterns(admin.site.get_urls())}


@pytest.fixture
def root(browser_page, account) -> Page:
    """A superuser linked to acme (their dashboard shows acme), who may open every page."""
    user = get_user_model().objects.create_superuser(username="root", password=PASSWORD)
    account_services.account_user_link(user=user, account=account)
    log_in(browser_page, "root")
    return browser_page


def given_one_of_everything(account) -> None:
    """An account after some use, plus the credentials, a filtering rule and a billing catalogue."""
    data = given_operator_data(account)
    account_services.application_access_create(account=account, name="billing", scopes=["all"])
    account_services.api_key_create(account=account, name="ingest")
    metering_services.filtering_rule_save(
        account_id=account.pk,
        meter_type=data.meter_type,
        dimension_name="region",
        dimension_values=["eu-north-1"],
        action="INCLUDE",
    )
    product = billing_services.catalogue_save(instance=Product(account=account, name="Pro plan"))
    billing_services.catalogue_save(
        instance=Price(
            account=account, product=product, meter_type=data.meter_type, unit_amount=Decimal("0.01")
        )
    )
    subscription = billing_services.catalogue_save(
        instance=Subscription(account=account, customer_id="ann@acme.example")
    )
    billing_services.subscription_products_set(subscription=subscription, products=[product])


@pytest.mark.parametrize("width", [1280, 1440])
def test_no_page_overflows_the_viewport_without_a_scrollbar(root, account, width):
    page = root
    given_one_of_everything(account)
    page.set_viewport_size({"width": width, "height": 900})
    pages, seen = console_pages()
    assert _admin_url_names() - seen - NOT_PAGES == set(), "an admin page this test does not know"

    overflows = {}
    for console_page in pages:
        answer = page.goto(console_page.url)
        assert answer is not None and answer.status == 200, console_page.url
        found = overflowing(page)
        if found:
            overflows[console_page.url] = found
        if width == 1280 and console_page.name:
            screenshot(page, console_page.name)
    page.context.clear_cookies()  # logged out: the login page
    page.goto(reverse("admin:login"))
    if found := overflowing(page):
        overflows["login"] = found
    assert overflows == {}
    assert len(pages) > 60
