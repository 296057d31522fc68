from rest_framework.routers import SimpleRouter

from collection.api.views import CollectorViewSet

router = SimpleRouter(trailing_slash=False)
router.register("online-collection/collectors", CollectorViewSet, basename="collector")

# Send data (…/{id}/data) is a hot route: config/hot_routes.py.
urlpatterns: list = [*router.urls]
