"""The Amberflo-compatible (seed 002) and billing-compatible (seed 004) paths; ``/ingest`` and
report usage are hot routes (config/hot_routes.py)."""

from django.urls import path

from metering.compat import views

urlpatterns = [
    path("meter-definition", views.MeterDefinitionsView.as_view(), name="amberflo-meter-definitions"),
    path(
        "meter-definition/<str:meterApiName>",
        views.MeterDefinitionView.as_view(),
        name="amberflo-meter-definition",
    ),
    path("usage", views.UsageView.as_view(), name="amberflo-usage"),
    path("meter-event-filtering-rules", views.FilteringRulesView.as_view(), name="amberflo-filtering-rules"),
    path(
        "billing/meters/subscriptions",
        views.MeterSubscriptionsByNameView.as_view(),
        name="billing-meter-subscriptions-by-name",
    ),
    path(
        "billing/meters/<str:meterId>/subscriptions",
        views.MeterSubscriptionsView.as_view(),
        name="billing-meter-subscriptions",
    ),
]
