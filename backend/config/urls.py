"""URL configuration.

HealthCheckMiddleware answers GET and HEAD on the probe paths and /metrics before
Host validation and routing; other methods reach the same views through the routes
below, after the usual checks.
"""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from apps.core.http import readiness
from apps.core.http.admin_login import admin_login
from apps.core.http.metrics import metrics
from runtime.probes import LIVENESS_PATH, METRICS_PATH, READINESS_PATH, route

urlpatterns = [
    path(route(LIVENESS_PATH), readiness.liveness, name="health"),
    path(route(READINESS_PATH), readiness.readiness, name="health-ready"),
    path(route(METRICS_PATH), metrics, name="metrics"),
    path("api/v1/", include("apps.inventory.urls")),
    # The schema is public: it documents the API, it grants nothing.
    path(
        "api/schema/",
        SpectacularAPIView.as_view(permission_classes=[AllowAny]),
        name="api-schema",
    ),
    # Before the admin's own routes: its login answers 429 while braked.
    path(f"{settings.ADMIN_URL}login/", admin_login),
    path(settings.ADMIN_URL, admin.site.urls),
]

handler400 = "apps.core.http.errors.handler400"
handler403 = "apps.core.http.errors.handler403"
handler404 = "apps.core.http.errors.handler404"
handler500 = "apps.core.http.errors.handler500"
