"""Form widgets for the JSON an operator edits in the admin, as rows of inputs instead of raw JSON
text: thresholds, a type's dimensions, a meter's custom fields and a filtering rule's values. A
widget reads its rows back into the JSON the model field stores; the field's own validators
(``metering.validators``) still decide what is valid, so the API and the admin accept the same
values."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms

THRESHOLD_KINDS = [("capacityPercentage", "% of capacity"), ("value", "absolute value")]


def _loaded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def _number(text: str) -> int | float | str:
    """``80`` and ``2.5`` as numbers; anything else as typed, for the validator to refuse by name."""
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else number


class _RowsWidget(forms.Widget):
    """Rows of inputs for one JSON value. The raw JSON under the field's own name still wins (as a
    script or an older form posts it); ``posted`` names the input whose presence says the rows were
    posted; ``rows_value`` reads them back."""

    posted = "-count"
    rows_value: Callable[[Any, str], Any]  # each widget's own: the posted rows as the JSON value

    def value_from_datadict(self, data, files, name):
        if name in data:
            return data[name]
        return json.dumps(self.rows_value(data, name))

    def value_omitted_from_data(self, data, files, name):
        return name not in data and f"{name}{self.posted}" not in data


def _row_count(data, name: str) -> int:
    """How many rows the form says it posted (at most 1,000)."""
    try:
        return min(int(data.get(f"{name}-count") or 0), 1000)
    except ValueError:
        return 0


class ThresholdsWidget(_RowsWidget):
    """Up to ``rows`` thresholds, each a name (optional), a kind (percentage of capacity or absolute
    value) and a level; a row without a level is left out."""

    template_name = "admin/metering/widgets/thresholds.html"
    posted = "-0-level"

    def __init__(self, attrs=None, rows: int = 5):
        super().__init__(attrs)
        self.rows = rows

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        written = _loaded(value)
        thresholds = [item for item in written if isinstance(item, dict)] if isinstance(written, list) else []
        rows = []
        for index in range(max(self.rows, len(thresholds))):
            item = thresholds[index] if index < len(thresholds) else {}
            kind = "value" if "value" in item else "capacityPercentage"
            rows.append(
                {"index": index, "name": item.get("name", ""), "kind": kind, "level": item.get(kind, "")}
            )
        context["widget"].update({"rows": rows, "kinds": THRESHOLD_KINDS})
        return context

    def rows_value(self, data, name: str) -> Any:
        thresholds = []
        for index in range(self.rows):
            level = (data.get(f"{name}-{index}-level") or "").strip()
            if not level:
                continue
            kind = data.get(f"{name}-{index}-kind")
            threshold: dict[str, Any] = {}
            if (label := (data.get(f"{name}-{index}-name") or "").strip()) != "":
                threshold["name"] = label
            threshold["value" if kind == "value" else "capacityPercentage"] = _number(level)
            thresholds.append(threshold)
        return thresholds


class NameRowsWidget(_RowsWidget):
    """A JSON list of names (a type's dimensions, a filtering rule's values) as one text input per
    name, with ``extra`` empty rows after the written ones; an empty row is left out. ``item`` names
    one entry for screen readers ("dimension 1")."""

    template_name = "admin/metering/widgets/name_rows.html"

    def __init__(self, attrs=None, extra: int = 3, item: str = "dimension"):
        super().__init__(attrs)
        self.extra = extra
        self.item = item

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        written = _loaded(value)
        names = (
            [item if isinstance(item, str) else json.dumps(item) for item in written or []]
            if isinstance(written, list)
            else []
        )
        rows = [{"index": index, "name": item} for index, item in enumerate([*names, *[""] * self.extra])]
        context["widget"].update({"rows": rows, "count": len(rows), "item": self.item})
        return context

    def rows_value(self, data, name: str) -> Any:
        names = [(data.get(f"{name}-{index}") or "").strip() for index in range(_row_count(data, name))]
        return [item for item in names if item]


FIELD_KINDS = [("text", "text"), ("number", "number"), ("boolean", "true/false"), ("json", "JSON")]


def _field_row(index: int, key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"index": index, "key": key, "kind": "boolean", "value": "true" if value else "false"}
    if isinstance(value, (int, float)):
        return {"index": index, "key": key, "kind": "number", "value": json.dumps(value)}
    if isinstance(value, str):
        return {"index": index, "key": key, "kind": "text", "value": value}
    return {"index": index, "key": key, "kind": "json", "value": json.dumps(value)}


def _field_value(kind: str | None, text: str) -> Any:
    """The typed value of a row; a number or JSON that does not parse stays text for the model's
    validators to see (and the form to show again)."""
    if kind == "number":
        return _number(text.strip())
    if kind == "boolean":
        return text.strip().lower() in ("true", "yes", "1", "on")
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


class FieldRowsWidget(_RowsWidget):
    """A JSON object (a meter's custom fields) as rows of name, kind and value, so a value keeps its
    JSON type (text, number, true/false, or any JSON); a row without a name is left out, and
    ``extra`` empty rows follow the written ones."""

    template_name = "admin/metering/widgets/field_rows.html"

    def __init__(self, attrs=None, extra: int = 3):
        super().__init__(attrs)
        self.extra = extra

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        written = _loaded(value)
        pairs = list(written.items()) if isinstance(written, dict) else []
        rows = [_field_row(index, key, item) for index, (key, item) in enumerate(pairs)]
        rows += [_field_row(len(pairs) + extra, "", "") for extra in range(self.extra)]
        context["widget"].update({"rows": rows, "count": len(rows), "kinds": FIELD_KINDS})
        return context

    def rows_value(self, data, name: str) -> Any:
        written = {}
        for index in range(_row_count(data, name)):
            key = (data.get(f"{name}-{index}-key") or "").strip()
            if key:
                kind = data.get(f"{name}-{index}-kind")
                written[key] = _field_value(kind, data.get(f"{name}-{index}-value") or "")
        return written
