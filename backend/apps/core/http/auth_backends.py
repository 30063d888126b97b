"""The authentication backend: Django's, behind the failed-login brake."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from apps.core.http.brakes import login_failure_record, login_refused


class BrakedModelBackend(ModelBackend):
    """ModelBackend that refuses an account or client IP past its failed logins.

    Every password login (the admin's form, `authenticate()`) goes through here.
    A refused attempt never checks the password, so a right guess during the
    lockout is worth nothing; PermissionDenied stops `authenticate()` from trying
    any other backend and marks the request for the admin's 429.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        if login_refused(request=request, username=username):
            if request is not None:
                request.login_braked = True  # type: ignore[attr-defined]
            raise PermissionDenied("too many failed logins")
        user = super().authenticate(request, username=username, password=password)
        if user is None:
            login_failure_record(request=request, username=username)
        return user
