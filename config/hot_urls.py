"""The lean URLconf (``config.hot.django``): the hot routes only, derived from the route table."""

from config.hot_routes import HOT_PATHS

urlpatterns = HOT_PATHS.urlpatterns()

handler400 = "config.api.views.bad_request"
handler403 = "config.api.views.forbidden"
handler404 = "config.api.views.not_found"
handler500 = "config.api.views.server_error"
