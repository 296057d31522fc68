"""One headless Chromium for the whole test session, shared by every browser test.

Debian's ``/usr/bin/chromium`` driven by Playwright for Python (never a downloaded browser), against
pytest-django's ``live_server``. Tests using it need ``django_db(transaction=True)``: the live
server answers from another thread, so the data must be committed.

Playwright's sync API keeps an event loop running in the test thread; Django refuses ORM calls
from a thread with a running loop unless ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set. The test thread
makes ORM calls only between browser calls, never concurrently with them, so the flag is set for
as long as the browser lives (from the first browser test to the end of the session).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Browser, Locator, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 10_000
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@pytest.fixture(scope="session")
def browser() -> Browser:
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                yield launched
            finally:
                launched.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture
def browser_page(browser: Browser, live_server) -> Page:
    """A fresh page (its own cookies) at 1280x800 whose relative URLs go to the live server."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def screenshots_dir() -> Path | None:
    """``docs/screenshots`` by default; ``UI_SCREENSHOTS_DIR`` elsewhere, or empty to take none."""
    configured = os.environ.get("UI_SCREENSHOTS_DIR")
    if configured is None:
        return Path(settings.BASE_DIR) / "docs" / "screenshots"
    return Path(configured) if configured else None


def screenshot(
    page: Page, name: str, *, full_page: bool = False, element: Locator | None = None
) -> Path | None:
    """Save what the viewport shows as ``<dir>/<name>.png`` (the pages documented in
    docs/console.md): or the whole page (``full_page``), or one ``element`` of it however tall."""
    directory = screenshots_dir()
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    if element is not None:
        element.screenshot(path=str(path), animations="disabled", caret="hide")
    else:
        page.screenshot(path=str(path), animations="disabled", caret="hide", full_page=full_page)
    return path


# Elements that stick out past the viewport's right edge, unless a scroll container of theirs
# (overflow-x auto or scroll) ends inside the viewport: those a person can scroll to. Also the
# page itself scrolling sideways (nothing should need that).
_OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (element) => {
    for (let parent = element.parentElement; parent; parent = parent.parentElement) {
      const style = getComputedStyle(parent);
      if (['auto', 'scroll'].includes(style.overflowX) && parent.getBoundingClientRect().right <= width + 1) {
        return true;
      }
      // Clipped by an ancestor (an svg's own box, say): that ancestor is judged instead.
      if (style.overflowX === 'hidden' || style.overflowX === 'clip') { return true; }
    }
    return false;
  };
  const found = [];
  for (const element of document.body.querySelectorAll('*')) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || getComputedStyle(element).visibility === 'hidden') { continue; }
    if (box.right > width + 1 && !scrolls(element)) {
      found.push(`${element.tagName.toLowerCase()}${element.id ? '#' + element.id : ''}` +
                 `${element.className && typeof element.className === 'string' ? '.' + element.className.trim().split(/\\s+/).join('.') : ''}` +
                 ` right=${Math.round(box.right)}`);
    }
  }
  if (document.scrollingElement.scrollWidth > width + 1) {
    found.push(`the page scrolls sideways: ${document.scrollingElement.scrollWidth} > ${width}`);
  }
  return found.slice(0, 10);
}"""


def overflowing(page: Page) -> list[str]:
    """What sticks out of the viewport where no scrollbar reaches it (empty: nothing)."""
    return page.evaluate(_OVERFLOWING)
