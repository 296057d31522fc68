"""A URLconf for testing the shared API conventions in isolation from any app's endpoints."""

from django.urls import include, path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from accounts.models import ApplicationAccess
from config.api.viewsets import AccountScopedViewSet
from config.urls import urlpatterns as real_urlpatterns


class AccessSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApplicationAccess
        fields = ["id", "name"]


class ProbeViewSet(AccountScopedViewSet):
    """Lists the caller's Application Accesses; needs ``usage-metering:read:meter_types``."""

    queryset = ApplicationAccess.objects.all()
    serializer_class = AccessSerializer
    list_key = "accesses"
    sort_fields = {"name": "name", "createdAt": "created_at"}
    required_scopes = {
        "list": ["usage-metering:read:meter_types", "read:meter_types"],
        "retrieve": ["usage-metering:read:meter_types"],
        "create": ["usage-metering:create:meter_types"],
    }
    throttle_group = "meter_types"

    def create(self, request):
        return Response(request.data, status=201)


router = SimpleRouter(trailing_slash=False)
router.register("probe", ProbeViewSet, basename="probe")
urlpatterns = [path("", include(router.urls)), *real_urlpatterns]
