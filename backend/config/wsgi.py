"""WSGI entry point (gunicorn gthread, the default web server)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()
# Import every URLconf and view now (check() walks them all), not on the first
# request: gunicorn preloads this module in its master, so every worker it forks
# starts with them loaded.
get_resolver().check()
