"""The routes ``config.hotpath.HotPathHandler`` serves (also in the main URLconf, for reverse()
and the test client). ``config.hotpath._HOT_PATHS`` matches exactly these paths."""

from django.conf import settings
from django.urls import path

from collection.api.ingest import send_data
from metering.compat.views import ingest, report_usage

urlpatterns = [
    path("online-collection/collectors/<str:id>/data", send_data),
    path("ingest", ingest),
    path("billing/meters/usage", report_usage),
]

if settings.BENCH_MINIMAL_VIEW:  # the benchmarks' ceiling, served the same way
    from bench import minimal_view

    urlpatterns += minimal_view.urlpatterns

handler400 = "config.api.views.bad_request"
handler403 = "config.api.views.forbidden"
handler404 = "config.api.views.not_found"
handler500 = "config.api.views.server_error"
