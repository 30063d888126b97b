# Two commands on a fresh machine: `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.12
# pyenv machines keep 3.12 beside the default; harmless where pyenv is absent.
export PYENV_VERSION ?= 3.12.1
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
BACKEND := backend
# DATABASE_URL / REDIS_URL: no defaults. Unset, `make test` starts private throwaway
# servers for the run (backend/tests/support/servers.py); set, it uses those servers.
PYTEST_ARGS ?=
IMAGE ?= inventory-backend:test
# buildah builds the Dockerfile without a Docker daemon or a registry (vfs storage,
# chroot isolation: no privileges needed).
BUILDAH := STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot buildah

.PHONY: help venv run test test-pgbouncer scale-drill restore-drill chaos lint format lock image image-test platform-test release-drill docs bench bench-profile

help:
	@echo "make run    - create the venv, install, migrate, serve on http://127.0.0.1:5000"
	@echo "make test   - run the whole test suite (private PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set)"
	@echo "make test-pgbouncer - the inventory, core and process tests through PgBouncer"
	@echo "                      (transaction pooling) in front of the private PostgreSQL"
	@echo "make lint   - ruff check + ruff format --check"
	@echo "make format - apply ruff's formatting and safe fixes"
	@echo "make bench  - benchmarks beside baselines; writes bench/results.json"
	@echo "make docs   - regenerate ENVIRONMENT_VARIABLES.md and .env.example"
	@echo "make lock   - recompile the hashed requirement locks from the .in files"
	@echo "make image  - build the image from the Dockerfile with buildah (tag $(IMAGE))"
	@echo "make image-test - build, then run the image tests (roles inside the image)"
	@echo "make platform-test - build, then run Compose, Kubernetes (podman), ECS and"
	@echo "                     Railway deployments from the shipped files (needs Docker"
	@echo "                     Engine and podman)"
	@echo "make scale-drill - web 2->8, workers 1->4 through PgBouncer on a 40-connection"
	@echo "                   PostgreSQL, a Redis failover, a pooler restart; books audited"
	@echo "make chaos  - overlapping faults (kills, Redis failover, pooler restart, PostgreSQL"
	@echo "              paused, a frozen broker) under load, then the books audited;"
	@echo "              CHAOS_SECONDS=180 CHAOS_SEED=<printed seed> to replay a run"
	@echo "make restore-drill - back up, drop the database and empty Redis, restore,"
	@echo "                     resync; rows, API and stock checked (host processes)"
	@echo "make release-drill - build, then release v2 and roll back to v1 under load"
	@echo "                     behind HAProxy; 0 failed requests (Docker Engine, haproxy)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python $(BACKEND)/requirements/dev.txt
	$(BIN)/pip install --quiet --require-hashes -r $(BACKEND)/requirements/dev.txt
	touch $@

venv: $(VENV)/.installed

# Embedded defaults (DEBUG=true: SQLite, in-memory cache, eager Celery) served by the
# same gunicorn configuration production uses.
run: venv
	cd $(BACKEND) && DEBUG=true $(BIN)/python manage.py migrate --no-input
	cd $(BACKEND) && DEBUG=true $(BIN)/python manage.py collectstatic --no-input -v0
	cd $(BACKEND) && DEBUG=true exec $(BIN)/gunicorn -c config/gunicorn_conf.py config.wsgi

# exec: make's SIGTERM reaches the launcher, which stops and removes its servers.
test: venv
	cd $(BACKEND) && exec $(BIN)/python -m tests.support.servers --ignore=tests/image --ignore=tests/platforms $(PYTEST_ARGS)

# The same tests a pooled deployment depends on, with DATABASE_URL through PgBouncer in
# transaction mode and DATABASE_DIRECT_URL straight to PostgreSQL (tests/support/servers.py).
test-pgbouncer: venv
	cd $(BACKEND) && TEST_DB_POOLER=pgbouncer exec $(BIN)/python -m tests.support.servers \
		tests/inventory tests/core tests/processes $(PYTEST_ARGS)

# --format docker keeps HEALTHCHECK and STOPSIGNAL (OCI image configs have no field).
# --layers=false: buildah 1.28 cannot bind-mount a stage taken from its layer cache
# (RUN --mount=type=bind,from=wheels), so every build runs both stages.
image:
	$(BUILDAH) bud --format docker --network host --layers=false \
		--build-arg REVISION=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
		-t $(IMAGE) -f Dockerfile .
	-$(BUILDAH) rmi --prune >/dev/null 2>&1

image-test: venv image
	cd $(BACKEND) && IMAGE=$(IMAGE) exec $(BIN)/python -m tests.support.servers tests/image $(PYTEST_ARGS)

# The shipped deployment files started as each platform starts them: Docker Engine
# (Compose, ECS, Railway semantics) and podman (Kubernetes manifests).
# NO_IMAGE_BUILD=1 reuses the image a previous `make image` built (as .ci/run does).
# The chaos soak is left to `make chaos` (.ci/run runs it next): it is timed by CHAOS_SECONDS.
platform-test: venv $(if $(NO_IMAGE_BUILD),,image)
	cd $(BACKEND) && IMAGE=$(IMAGE) exec $(BIN)/python -m tests.support.servers tests/platforms \
		--ignore=tests/platforms/test_chaos.py $(PYTEST_ARGS)

# A rolling release and rollback under load behind HAProxy (Docker Engine, haproxy);
# also part of platform-test. NO_IMAGE_BUILD=1 reuses v1's image.
release-drill: venv $(if $(NO_IMAGE_BUILD),,image)
	@command -v haproxy >/dev/null || { echo "haproxy is missing: apt-get install haproxy"; exit 1; }
	cd $(BACKEND) && IMAGE=$(IMAGE) exec $(BIN)/python -m tests.support.servers tests/platforms/test_release_drill.py -s $(PYTEST_ARGS)

# Web 2 -> 8 and workers 1 -> 4 through PgBouncer on a 40-connection PostgreSQL, a
# Redis Sentinel failover and a PgBouncer restart under load, then the books audited;
# host processes (postgresql, pgbouncer, redis-server, haproxy). Also part of
# platform-test.
scale-drill: venv
	@command -v haproxy >/dev/null || { echo "haproxy is missing: apt-get install haproxy"; exit 1; }
	cd $(BACKEND) && exec $(BIN)/python -m tests.support.servers tests/platforms/test_scale_drill.py -s $(PYTEST_ARGS)

# Overlapping faults under steady mixed load on the scale drill's stack (3 web, 2
# workers, beat), then the books audited from PostgreSQL and the client's history.
# CHAOS_SEED unset: a random seed, printed first; a failing run replays with it.
CHAOS_SECONDS ?= 180
CHAOS_SEED ?=
chaos: venv
	@command -v haproxy >/dev/null || { echo "haproxy is missing: apt-get install haproxy"; exit 1; }
	cd $(BACKEND) && CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_SEED=$(CHAOS_SEED) \
		exec $(BIN)/python -m tests.support.servers tests/platforms/test_chaos.py -s $(PYTEST_ARGS)

# Backup and restore (DEPLOYMENT_GUIDE.md, "Backup and restore"): state made through
# the API, pg_dump --format=custom, DROP DATABASE and the run's Redis emptied,
# pg_restore, manage.py restore_resync; prints rows and the seconds of each step.
# Host processes on the launcher's private servers (pg_dump/pg_restore come with the
# postgresql package the tests already need).
restore-drill: venv
	cd $(BACKEND) && exec $(BIN)/python -m tests.support.servers tests/platforms/test_restore_drill.py -s $(PYTEST_ARGS)

# Benchmarks (not part of make test): loopback, wrk from Debian's packages.
bench: venv
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
	$(BIN)/python bench/run.py

# Where one request's time goes: a profile of N in-process requests (bench/README.md).
bench-profile: venv
	$(BIN)/python bench/profile_requests.py

docs: venv
	cd $(BACKEND) && $(BIN)/python -m runtime.env.docs

lint: venv
	cd $(BACKEND) && $(BIN)/ruff check . ../bench && $(BIN)/ruff format --check . ../bench

format: venv
	cd $(BACKEND) && $(BIN)/ruff check --fix . ../bench && $(BIN)/ruff format . ../bench

lock: $(BIN)/python
	$(BIN)/pip install --quiet pip-tools
	cd $(BACKEND)/requirements && \
		$(BIN)/pip-compile -q --generate-hashes --strip-extras --allow-unsafe -o base.txt base.in && \
		$(BIN)/pip-compile -q --generate-hashes --strip-extras --allow-unsafe -o dev.txt dev.in
