"""ASGI entry point (GUNICORN_WORKER_CLASS=uvicorn)."""

import os

from django.core.asgi import get_asgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()
# As in config/wsgi.py: every view imported in gunicorn's master (preload_app).
get_resolver().check()
