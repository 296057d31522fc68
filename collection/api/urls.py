from django.urls import path
from rest_framework.routers import SimpleRouter

from collection.api.ingest import send_data
from collection.api.views import CollectorViewSet

router = SimpleRouter(trailing_slash=False)
router.register("online-collection/collectors", CollectorViewSet, basename="collector")

urlpatterns: list = [
    path("online-collection/collectors/<str:id>/data", send_data, name="collector-send-data"),
    *router.urls,
]
