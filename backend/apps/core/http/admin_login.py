"""The admin's login view, answering 429 while the failed-login brake engages
(apps/core/http/brakes.py)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse


def admin_login(
    request: HttpRequest, extra_context: dict | None = None
) -> HttpResponse:
    """The admin's login page; 429 while the failed-login brake refuses the account
    or the address, so that monitoring and proxies see a refusal, not a form."""
    response = admin.site.login(request, extra_context)
    if getattr(request, "login_braked", False) and response.status_code == 200:
        response.status_code = 429
    return response
