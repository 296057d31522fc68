from django.urls import include, path
from rest_framework.routers import SimpleRouter

from streams.api.views import StreamViewSet

router = SimpleRouter(trailing_slash=False)
router.register("streams", StreamViewSet, basename="streams")

urlpatterns = [path("", include(router.urls))]
