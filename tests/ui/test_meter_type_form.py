"""A browser drives the meter type form: the next resets follow the schedule as it is typed."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

PASSWORD = "pw-12345678"


@pytest.mark.django_db(transaction=True)
def test_next_resets_preview_updates_while_typing(browser_page):
    # The shared session browser (tests/ui/browser.py); relative URLs go to the live server.
    get_user_model().objects.create_superuser(username="root", password=PASSWORD)
    page = browser_page
    page.goto("/admin/login/?next=/admin/metering/metertype/add/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    # Before anything is typed: no error anywhere (no "'' is not an IANA timezone name"), the
    # preview waits for a schedule, and the time zone offers the IANA names as a searchable list.
    page.wait_for_load_state("networkidle")
    expect(page.locator(".errorlist, .errornote")).to_have_count(0)
    assert "is not" not in page.locator("#next-resets").inner_text()
    assert page.get_attribute("#id_timezone", "list") == "iana-timezones"
    assert page.locator("#iana-timezones option[value='Europe/Stockholm']").count() == 1

    page.fill("#id_timezone", "Europe/Stockholm")
    page.fill("#id_reset_cron", "0 0 1 * *")
    resets = page.locator("#next-resets li")
    expect(resets).to_have_count(5)
    monthly = re.compile(r"^\d{4}-\d{2}-01 00:00 CES?T \(\d{4}-\d{2}-\d{2} 2[23]:00 UTC\)$")
    assert all(monthly.match(text) for text in resets.all_inner_texts())

    page.fill("#id_reset_cron", "0 0 30 2 *")
    expect(page.locator("#next-resets")).to_have_text("'0 0 30 2 *' never fires.")
