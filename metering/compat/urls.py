"""The Amberflo-compatible (seed 002) paths; ``/ingest`` and report usage are hot routes
(config/hot_routes.py); seed 004's subscription lookups are in billing/api/urls.py."""

from django.urls import path

from metering.compat import views


def _either_slash(route: str, view, name: str) -> list:
    """``route`` and ``route/``: the Amberflo SDK posts to ``/usage/`` and ``/ingest/``."""
    return [path(route, view, name=name), path(f"{route}/", view, name=f"{name}-slash")]


urlpatterns = [
    *_either_slash("meter-definition", views.MeterDefinitionsView.as_view(), "amberflo-meter-definitions"),
    *_either_slash(
        "meter-definition/<str:meterApiName>",
        views.MeterDefinitionView.as_view(),
        "amberflo-meter-definition",
    ),
    *_either_slash("usage/batch", views.UsageBatchView.as_view(), "amberflo-usage-batch"),
    *_either_slash("usage", views.UsageView.as_view(), "amberflo-usage"),
    *_either_slash(
        "meter-event-filtering-rules", views.FilteringRulesView.as_view(), "amberflo-filtering-rules"
    ),
]
