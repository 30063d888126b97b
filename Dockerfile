# syntax=docker/dockerfile:1.7
# One image, four roles (APP_ROLE=web|worker|beat|migrate). Build: `make image`.
ARG PYTHON_IMAGE=python:3.12-slim

# --- Stage 1: the virtual environment, from the hash-locked runtime requirements ---
# Built here and copied whole, so nothing of the build (pip, caches, translation
# sources) reaches a layer of the runtime image.
FROM ${PYTHON_IMAGE} AS venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY backend/requirements/base.txt /tmp/requirements.txt
# pip compiles every module to bytecode while installing: a read-only root never
# recompiles. Then the installer leaves: no pip/setuptools/wheel at run time, and no
# gettext sources (*.po; Django reads the compiled *.mo).
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.txt \
    && /opt/venv/bin/pip uninstall --yes setuptools wheel pip \
    && find /opt/venv -name '*.po' -delete

# --- Stage 2: runtime: the venv of stage 1, the code, static files ---------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="inventory-backend" \
      org.opencontainers.image.description="Production-hardened Django backend: web, worker, beat and migrate roles" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Proprietary"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    APP_ROLE=web \
    PORT=5000 \
    HEARTBEAT_DIR=/tmp \
    SENTRY_RELEASE=${VERSION}

# tini as PID 1: forwards signals to the entrypoint's exec'd process and reaps zombies.
# Unpinned on purpose: the base image fixes the Debian release, and a pinned package
# version disappears from the archive at its next point release. All of
# /var/cache/apt goes: its package caches (pkgcache.bin) weigh ~75 MB after an update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*

# uid/gid 1000. The code is world-readable and the only writable path is /tmp, so an
# arbitrary uid in group 0 (OpenShift) runs it as well.
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin app

COPY --from=venv /opt/venv /opt/venv

WORKDIR /app
COPY --chown=0:0 backend/ /app/
# Static files are collected at build time with the embedded defaults (DEBUG=true for
# this one command: no production secret is needed or baked in; run time is untouched).
# The code stays read-only for the app user; /tmp is its only writable path.
# The code's bytecode is compiled here too, for the same read-only root.
RUN DEBUG=true python manage.py collectstatic --no-input -v0 \
    && rm -f /app/db.sqlite3 \
    && python -m compileall -q -j 0 /app

USER 1000:1000
# /tmp is the only writable path (heartbeats, the role file, metrics). Declared as a
# volume so that platforms mounting a task volume there (ECS Fargate bind volumes)
# populate it from the image, mode 1777; otherwise it is root-owned 0755 and
# uid 1000 cannot write (AWS "Bind mounts with Amazon ECS").
VOLUME ["/tmp"]
EXPOSE 5000
# gunicorn drains on SIGTERM; the entrypoint maps SIGTERM to Celery's soft shutdown.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "runtime.healthcheck"]
ENTRYPOINT ["tini", "--", "/app/scripts/entrypoint.sh"]
CMD []
