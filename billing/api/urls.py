"""Seed 004's meter subscription lookups (report usage is a hot route of metering.compat)."""

from django.urls import path

from billing.api import views

urlpatterns = [
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
