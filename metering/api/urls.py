from rest_framework.routers import SimpleRouter

from metering.api.views import MeterTypeViewSet, MeterViewSet

router = SimpleRouter(trailing_slash=False)
router.register("meter-types", MeterTypeViewSet, basename="meter-type")
router.register("meters", MeterViewSet, basename="meter")

urlpatterns = router.urls
