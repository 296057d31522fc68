"""Dates and times in the admin: one convention everywhere, ISO order in UTC with its name stated
(``2026-12-07 11:36:37 UTC``), never ``Dec. 7, 2026, 11:35 a.m.``. Pages that show a meter
type's own time zone name it beside the time."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
