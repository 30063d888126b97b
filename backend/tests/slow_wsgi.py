"""The project's WSGI app plus a /slow/ path (tests of graceful shutdown only)."""

import time

from config.wsgi import application as project_application


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/slow/":
        time.sleep(1.0)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]
    return project_application(environ, start_response)
