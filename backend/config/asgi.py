"""ASGI entry point (GUNICORN_WORKER_CLASS=uvicorn)."""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.urls import get_resolver

from apps.core.http.asgi_body_limit import body_limit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Outermost: a body over the limit is refused before Django spools any of it.
application = body_limit(
    get_asgi_application(), limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE
)
# As in config/wsgi.py: every view imported in gunicorn's master (preload_app).
get_resolver().check()
