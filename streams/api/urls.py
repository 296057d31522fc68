from django.urls import include, path
from rest_framework.routers import SimpleRouter

from streams.api.outputs import StreamDeliveriesView, StreamHealthView
from streams.api.views import AggregationSessionLookupView, StreamViewSet

router = SimpleRouter(trailing_slash=False)
router.register("streams", StreamViewSet, basename="streams")

urlpatterns = [
    # Before the router's streams/<pk>, so "deliveries" and "health" are not taken for actions.
    path("streams/<str:id>/deliveries", StreamDeliveriesView.as_view(), name="stream-deliveries"),
    path("streams/<str:id>/health", StreamHealthView.as_view(), name="stream-health"),
    path("", include(router.urls)),
    path(
        "aggregation/stores/<str:id>/sessions/lookup",
        AggregationSessionLookupView.as_view(),
        name="aggregation-session-lookup",
    ),
]
