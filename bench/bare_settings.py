"""Baseline Django: no middleware, no apps beyond the minimum, same database."""

import os

SECRET_KEY = "bench-baseline-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.bare_views"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["BENCH_DB_NAME"],
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "CONN_MAX_AGE": 0
        if os.environ.get("GUNICORN_WORKER_CLASS") == "uvicorn"
        else 600,
    }
}
