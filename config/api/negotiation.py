"""Content negotiation: the API answers JSON whatever the Accept header says.

DRF's default answers 406 to ``Accept: text/html`` or ``application/xml``; a server may ignore
Accept and send its one representation (RFC 9110 §12.5.1), which keeps every answer — errors
included — the JSON the API documents, and keeps 406 out of the statuses a client must handle.
"""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation


class JsonContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type
