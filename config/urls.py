from django.contrib import admin
from django.http import HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from accounts.api.views import TokenView
from config.api import ops
from config.hot_routes import HOT_PATHS
from config.metrics import metrics_view
from console.explorer import usage_explorer_view

admin.site.site_header = "Usage metering"
admin.site.site_title = "Usage metering"
admin.site.index_title = "Metering console"
# "View site": the service has no public site; its API documentation is what a visitor wants.
admin.site.site_url = "/docs/"

urlpatterns = [
    path("oauth/token", TokenView.as_view(), name="oauth-token"),
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
    path("admin", lambda request: HttpResponseRedirect("/admin/")),
    path("favicon.ico", lambda request: HttpResponseRedirect(static("console/favicon.svg"))),
    path("admin/usage/", admin.site.admin_view(usage_explorer_view), name="console-usage"),
    path("admin/", admin.site.urls),
    *HOT_PATHS.urlpatterns(),  # send data, /ingest, report usage (config/hot_routes.py)
    path("", include("metering.api.urls")),
    path("", include("billing.api.urls")),
    path("", include("collection.api.urls")),
    path("", include("streams.api.urls")),
    path("", include("parameters.api.urls")),
    path("", include("notifications.api.urls")),
]

handler400 = "config.api.views.bad_request"
handler403 = "config.api.views.forbidden"
handler404 = "config.api.views.not_found"
handler500 = "config.api.views.server_error"
