"""Helpers the tests import. conftest files only wire them into fixtures.

net: free ports. processes: running and stopping real processes (python, gunicorn,
the entrypoint, a worker). http: waiting for a server. redis: private redis-servers.
postgres: the test database's own connections and lock table. wait: polling.
env: production-like environments. containers: buildah, Docker and podman.
observability: what the dashboard and alert rules query.
"""
