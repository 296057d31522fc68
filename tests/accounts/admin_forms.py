"""Fill an admin page's own form as a browser would: the fields and values the page renders."""

from __future__ import annotations

from html.parser import HTMLParser


class _FormFields(HTMLParser):
    def __init__(self, form_id: str | None):
        super().__init__()
        self.form_id = form_id
        self.in_form = False
        self.fields: dict[str, list[str]] = {}
        self.options: dict[str, list[tuple[str, str]]] = {}
        self._select: str | None = None
        self._option: tuple[str, bool] | None = None
        self._textarea: str | None = None

    def _add(self, name: str, value: str) -> None:
        self.fields.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (self.form_id is None or attrs.get("id") == self.form_id):
            self.in_form = True
        if not self.in_form:
            return
        name = attrs.get("name")
        if tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in attrs:
                    self._add(name, attrs.get("value", "on"))
            elif kind not in ("submit", "button", "file"):
                self._add(name, attrs.get("value") or "")
        elif tag == "select" and name:
            self._select = name
            self.options.setdefault(name, [])
        elif tag == "option" and self._select:
            self._option = (attrs.get("value", ""), "selected" in attrs)
            self.options[self._select].append((attrs.get("value", ""), ""))
            if "selected" in attrs:
                self._add(self._select, attrs.get("value", ""))
        elif tag == "textarea" and name:
            self._textarea = name
            self._add(name, "")

    def handle_data(self, data):
        if self._textarea:
            self.fields[self._textarea][-1] += data
        if self._option and self._select:
            value, _ = self.options[self._select][-1]
            self.options[self._select][-1] = (value, self.options[self._select][-1][1] + data)

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "option":
            self._option = None
        elif tag == "textarea":
            self._textarea = None


def admin_form(client, url: str, form_id: str | None = None) -> tuple[dict[str, list[str]], dict]:
    """GET ``url`` and return (the form's submitted values as a browser sends them, select options)."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    parser = _FormFields(form_id)
    parser.feed(response.content.decode())
    return parser.fields, parser.options
