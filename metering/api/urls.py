from django.urls import include, path
from rest_framework.routers import SimpleRouter

from metering.api.data_corrections import DataCorrectionViewSet
from metering.api.views import MeterTypeViewSet, MeterViewSet

router = SimpleRouter(trailing_slash=False)
router.register("meter-types", MeterTypeViewSet, basename="meter-type")
router.register("meters", MeterViewSet, basename="meter")
router.register("data-corrections", DataCorrectionViewSet, basename="data-correction")

urlpatterns = [*router.urls, path("", include("metering.compat.urls"))]
