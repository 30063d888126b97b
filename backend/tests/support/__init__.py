"""Helpers the tests import. conftest files only wire them into fixtures.

net: free ports. processes: running and stopping real processes (python, gunicorn,
the entrypoint, a worker). http: waiting for a server. redis: private redis-servers.
postgres: the test database's own connections and lock table. wait: polling.
env: production-like environments. containers: buildah, Docker and podman.
observability: what the dashboard and alert rules query.
servers: `make test`'s launcher (private PostgreSQL, Redis, PgBouncer for one run).
environment: the pytest plugin (-p) that sets the test environment.
factories: rows made through the services. tcp_proxy, freeze_proxy: fault injection
on a TCP path. ecs: an ECS task runner on Docker. Loaded by dotted path in the
processes the tests start: worker_tasks, beat_app (Celery), slow_wsgi (gunicorn),
slow_migration_settings with the slow_migration app (migrate).
"""
