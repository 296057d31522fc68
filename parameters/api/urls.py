from django.urls import path

from parameters.api.views import ParameterViewSet

urlpatterns = [
    path(
        "parameters",
        ParameterViewSet.as_view({"get": "list", "post": "create", "delete": "bulk_destroy"}),
        name="parameters",
    ),
    # <path:…> because names hold slashes: GET /parameters/credentials/payment-gateway/api-key
    path(
        "parameters/<path:name>",
        ParameterViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="parameter-detail",
    ),
]
