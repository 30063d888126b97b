"""URL configuration. /health/ and /health/ready/ are answered by middleware."""

from django.conf import settings
from django.contrib import admin
from django.urls import path

from apps.core import health
from apps.core.views import metrics

urlpatterns = [
    # Reachable here too, for tools that bypass middleware (e.g. the test client).
    path("health/", health.liveness, name="health"),
    path("health/ready/", health.readiness, name="health-ready"),
    path("metrics", metrics, name="metrics"),
    path(settings.ADMIN_URL, admin.site.urls),
]

handler400 = "apps.core.exceptions.handler400"
handler403 = "apps.core.exceptions.handler403"
handler404 = "apps.core.exceptions.handler404"
handler500 = "apps.core.exceptions.handler500"
