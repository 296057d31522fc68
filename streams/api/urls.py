from django.urls import include, path
from rest_framework.routers import SimpleRouter

from streams.api.views import AggregationSessionLookupView, StreamViewSet

router = SimpleRouter(trailing_slash=False)
router.register("streams", StreamViewSet, basename="streams")

urlpatterns = [
    path("", include(router.urls)),
    path(
        "aggregation/stores/<str:id>/sessions/lookup",
        AggregationSessionLookupView.as_view(),
        name="aggregation-session-lookup",
    ),
]
