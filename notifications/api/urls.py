from django.urls import include, path
from rest_framework.routers import SimpleRouter

from notifications.api.views import NotificationEndpointViewSet

router = SimpleRouter(trailing_slash=False)
router.register("notification-endpoints", NotificationEndpointViewSet, basename="notification-endpoint")

urlpatterns = [path("", include(router.urls))]
