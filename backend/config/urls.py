"""URL configuration. /health/ and /health/ready/ are answered by middleware."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from apps.core import health
from apps.core.views import metrics

urlpatterns = [
    # Reachable here too, for tools that bypass middleware (e.g. the test client).
    path("health/", health.liveness, name="health"),
    path("health/ready/", health.readiness, name="health-ready"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", include("apps.inventory.urls")),
    # The schema is public: it documents the API, it grants nothing.
    path(
        "api/schema/",
        SpectacularAPIView.as_view(permission_classes=[AllowAny]),
        name="api-schema",
    ),
    path(settings.ADMIN_URL, admin.site.urls),
]

handler400 = "apps.core.exceptions.handler400"
handler403 = "apps.core.exceptions.handler403"
handler404 = "apps.core.exceptions.handler404"
handler500 = "apps.core.exceptions.handler500"
