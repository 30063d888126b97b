"""What a container's processes need before (or without) Django.

The container probe, gunicorn's master and the entrypoint import these modules:
nothing here imports Django or the project's apps, so a probe every few seconds
stays cheap and a bad setting is reported before Django starts. `apps/` is built on
this layer; `config/` (settings, urls, the Celery app, gunicorn's configuration)
composes both.
"""
