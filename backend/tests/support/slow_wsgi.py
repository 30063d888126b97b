"""The project's WSGI app plus slow paths (tests of graceful shutdown only).

/slow/ takes 1 s; /slow/?seconds=N takes N seconds.
"""

import time
from urllib.parse import parse_qs

from config.wsgi import application as project_application


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/slow/":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        time.sleep(float(query.get("seconds", ["1.0"])[0]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]
    return project_application(environ, start_response)
