"""The project's error body for the request path: views, middleware and Django's
own error handlers (config/urls.py's handler400/403/404/500) answer in it.

Body: {"error": {"code", "message", "details"}, "request_id"}; DRF's exception
handler (apps/core/drf/exceptions.py) builds the same body for API errors.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from runtime.context import request_id_get
from runtime.error_document import error_document


def error_body(*, code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Return the project's error body for the current request."""
    return error_document(
        code=code, message=message, details=details, request_id=request_id_get()
    )


def json_error(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code=code, message=message), status=status_code)


def handler400(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return json_error(400, "bad_request", "Bad request.")


def handler403(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return json_error(403, "permission_denied", "Permission denied.")


def handler404(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return json_error(404, "not_found", "Not found.")


def handler500(request: HttpRequest) -> JsonResponse:
    return json_error(500, "server_error", "Internal server error.")
