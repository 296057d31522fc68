"""The README's gallery shows every screenshot the browser tests save, and nothing that is not there."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SHOWN = re.compile(r"docs/screenshots/([\w.-]+\.png)")


def test_the_readme_gallery_shows_every_screenshot_and_only_those():
    saved = {path.name for path in (ROOT / "docs" / "screenshots").glob("*.png")}
    shown = set(SHOWN.findall((ROOT / "README.md").read_text()))
    assert sorted(saved - shown) == []  # saved by a test, missing from the gallery
    assert sorted(shown - saved) == []  # in the gallery, no longer saved
