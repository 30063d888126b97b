"""Views that fail on purpose, mounted only by tests (override_settings)."""

from django.urls import include, path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny

from config.urls import handler400, handler403, handler404, handler500  # noqa: F401


def plain_boom(request):
    raise RuntimeError("secret detail that must not reach the client")


@api_view(["GET"])
@permission_classes([AllowAny])
def api_boom(request):
    raise RuntimeError("secret detail that must not reach the client")


@api_view(["POST"])
def api_needs_auth(request):
    return None


urlpatterns = [
    path("boom/", plain_boom),
    path("api/boom/", api_boom),
    path("api/needs-auth/", api_needs_auth),
    path("", include("config.urls")),
]
