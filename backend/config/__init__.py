"""The composition root: settings, URLs, the Celery app, gunicorn's configuration.

The Celery app is loaded with the package, as Celery's "First steps with Django"
guide does: every process that loads the settings (web, worker, beat, manage.py)
has the project's app as its current one, so `.delay()` anywhere in Django publishes
with its broker settings, not Celery's default amqp://localhost. Nothing in apps/
imports this package; apps reach the app as `celery.app.default_app`.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
