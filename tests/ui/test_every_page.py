"""Every page of the console, at the widths people use: nothing sticks out of the viewport where no
scrollbar reaches it. The pages are found from the admin's own URLs (every registered model's list,
add and change pages, their history and delete confirmations, every custom admin view), so a page
added later is checked without touching this test; one screenshot of each lands in docs/screenshots.
"""

from __future__ import annotations

import re
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
from streams import services as stream_services
from tests.ui.browser import overflowing, screenshot
from tests.ui.conftest import PASSWORD, log_in
from tests.ui.givens import OperatorData, given_operator_data, metering_stream_config

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


def given_one_of_everything(account) -> OperatorData:
    """An account after some use, plus the credentials, a filtering rule, a billing catalogue and a
    stream reading the gateway's collector (its consumer)."""
    data = given_operator_data(account)
    solution = stream_services.solution_create(account=account, name="Gateway")
    stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor={"type": "user", "id": "setup"},
        stream_config=metering_stream_config(data.collector),
    )
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
    return data


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


# What each page shows: its text (the rendered words, not the HTML), the values in its inputs, every
# capacity bar with the share it stands for and the colours it is drawn in, and every instant (a date
# with a time of day) whose time zone is stated nowhere a reader would look: not right after it
# ("… UTC", "… CET", "… → <instant> Europe/Stockholm"), not in its table column's header
# ("Started (UTC)"), not in the title of the chart it labels ("Value per period (Europe/Stockholm)").
_SHOWN = r"""() => {
  const typed = 'input:not([type=hidden]):not([type=checkbox]):not([type=radio]):not([type=password])';
  const inputs = [...document.querySelectorAll(`${typed}, textarea`)].map((field) => field.value);
  const bars = [...document.querySelectorAll('.console-bar')].map((bar) => {
    const figure = bar.parentElement.querySelector('.console-percent');
    return {
      share: bar.getAttribute('title'),
      fill: getComputedStyle(bar.firstElementChild).backgroundColor,
      figure: figure ? getComputedStyle(figure).color : null,
    };
  });
  const instant = /\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?/g;
  const zoneAfter = /^(?:\s*→\s*\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?)?\s*(?:UTC\b|[A-Z]{3,5}\b|[+-]\d{2}\b|\(?[A-Z][A-Za-z]+\/[A-Za-z_]+)/;
  const zoneNamed = /\bUTC\b|\b[A-Z][A-Za-z]+\/[A-Za-z_]+\b/;
  const columnStates = (element) => {
    const cell = element.closest('td, th');
    const table = cell && cell.closest('table');
    const header = table && table.tHead && table.tHead.rows[0] && table.tHead.rows[0].cells[cell.cellIndex];
    return Boolean(header && zoneNamed.test(header.textContent));
  };
  const chartStates = (element) => {
    const chart = element.closest('svg, figure');
    if (!chart) { return false; }
    const titles = chart.querySelectorAll('title, figcaption, .chart-title');
    return [...titles].some((title) => zoneNamed.test(title.textContent));
  };
  const unstated = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    if (!element || element.closest('script, style, template, textarea, option')) { continue; }
    // The sentence or cell the instant is in (an instant may sit in a <strong> of its own).
    const whole = (element.closest('p, li, td, th, dd, div, figcaption, caption, h1, h2, h3, label, text') || element).textContent;
    for (const match of node.textContent.matchAll(instant)) {
      const at = whole.indexOf(match[0]);
      const after = whole.slice(at + match[0].length);
      if (zoneAfter.test(after) || columnStates(element) || chartStates(element)) { continue; }
      unstated.push(`${whole.slice(Math.max(0, at - 30), at + match[0].length + 12).replace(/\s+/g, ' ')}`);
    }
  }
  return {text: document.body.innerText, inputs, bars, unstated};
}"""
UNTRIMMED = re.compile(r"\b\d+\.\d*0{3,}\b")  # 400.000000000000, 283.500000
MICROSECONDS = re.compile(r"\d{2}:\d{2}:\d{2}\.\d{3,}")
# Django's stock formats: "Dec. 7, 2026, 11:35 a.m.", "11:35 a.m.".
STOCK_DATE = re.compile(
    r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2}, \d{4}|\b[ap]\.m\."
)


def test_every_page_states_its_times_trims_its_numbers_and_colours_a_share_alike(root, account):
    page = root
    data = given_one_of_everything(account)
    pages, _ = console_pages()

    problems: dict[str, list[str]] = {}
    colours: dict[str, set[tuple[str, str | None]]] = {}  # a share ("85.0 %") -> its colours
    seen_on: dict[str, set[str]] = {}  # a share -> the pages showing it
    texts: dict[str, str] = {}
    for console_page in pages:
        answer = page.goto(console_page.url)
        assert answer is not None and answer.status == 200, console_page.url
        shown = page.evaluate(_SHOWN)
        text, inputs = shown["text"], shown["inputs"]
        texts[console_page.url] = text
        found = [f"untrimmed {value!r}" for value in UNTRIMMED.findall(text + "\n" + "\n".join(inputs))]
        found += [f"microseconds {value!r}" for value in MICROSECONDS.findall(text)]
        found += [f"stock date format {value!r}" for value in STOCK_DATE.findall(text)]
        found += [f"no zone stated: {value!r}" for value in shown["unstated"]]
        if found:
            problems[console_page.url] = found
        for bar in shown["bars"]:
            colours.setdefault(bar["share"], set()).add((bar["fill"], bar["figure"]))
            seen_on.setdefault(bar["share"], set()).add(page.url)

    assert problems == {}
    # A share is drawn in one pair of colours wherever it shows (85 % is never blue here, red there).
    assert {share: pair for share, pair in colours.items() if len(pair) > 1} == {}
    # The seeded meters' shares were seen, the near one (85 %) on the dashboard, both meter lists, the
    # meter's and its type's pages.
    assert {"85.0 %", "31.0 %", "24.0 %"} <= colours.keys()
    assert len(seen_on["85.0 %"]) >= 5, seen_on["85.0 %"]

    # Names, not ids: the stream reading the collector, on its page and among its consumers; the meter
    # type beside each meter of a threshold event and of a refused record.
    for url in (
        reverse("admin:collection_collector_change", args=[data.collector.pk]),
        reverse("admin:collection_consumeroffset_changelist"),
    ):
        assert "API calls metering" in texts[url], url
    assert "API calls" in texts[reverse("admin:metering_thresholdevent_changelist")]
    triage = texts[reverse("admin:metering_datacorrection_changelist")]
    assert triage.count("API calls") >= 3, triage
