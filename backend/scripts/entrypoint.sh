#!/usr/bin/env bash
# Container entrypoint: validate -> wait for dependencies -> migrate (locked) -> exec.
#
# Usage: entrypoint.sh [ROLE] [COMMAND...]
#   ROLE is web, worker, beat or migrate (default: $APP_ROLE, else web).
#   A COMMAND after the role runs instead of the role's process, after the same
#   validation and waits (e.g. `entrypoint.sh web python manage.py shell`).
# Every rule about variables lives in config/env.py; this script only asks it.
set -Eeuo pipefail

log() {
  printf '%s entrypoint[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${role:-?}" "$*" >&2
}
trap 'log "failed at line ${LINENO}: ${BASH_COMMAND}"' ERR

cd "$(dirname "$(readlink -f "$0")")/.."
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings}"

valid_roles="web worker beat migrate"
role="${APP_ROLE:-web}"
if [[ $# -gt 0 && " ${valid_roles} " == *" $1 "* ]]; then
  role="$1"
  shift
fi
if [[ " ${valid_roles} " != *" ${role} "* ]]; then
  log "unknown role '${role}'; valid roles: ${valid_roles// /, }"
  exit 2
fi
export APP_ROLE="${role}"

config_value() {
  python -m config.env --get "$1"
}

# 1. Validate: loading the settings runs the registry's checks and prints one block
#    naming every bad variable.
log "validating configuration"
if ! python -c 'import django; django.setup()'; then
  log "invalid configuration; nothing was started"
  exit 1
fi

# 2. Wait for PostgreSQL and Redis (backoff 1, 2, 4, 5... s up to DEPENDENCY_WAIT_TIMEOUT).
log "waiting for dependencies"
if ! python manage.py wait_for_dependencies; then
  exit 1
fi

# 3. Migrations, under a PostgreSQL advisory lock so concurrent replicas apply them once.
case "${role}" in
  migrate)
    python manage.py migrate_locked
    if [[ $# -eq 0 ]]; then
      log "migrations applied; exiting"
      exit 0
    fi
    ;;
  web)
    if [[ "$(config_value RUN_MIGRATIONS)" == "True" ]]; then
      python manage.py migrate_locked
    fi
    ;;
  worker | beat)
    python manage.py wait_for_migrations
    ;;
esac

# Metrics of all processes of this container are summed from one directory, which
# prometheus_client reads at import: set it before the role's process starts, and
# empty it so the files of a previous run are not counted again.
if [[ "${role}" == "web" || "${role}" == "worker" ]]; then
  export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$(config_value HEARTBEAT_DIR)/prometheus-${role}}"
  rm -rf "${PROMETHEUS_MULTIPROC_DIR:?}"
  mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
fi

# 4. Exec the role's process: it becomes the direct child of tini and gets SIGTERM.
case "${role}" in
  web)
    default_command=(gunicorn -c config/gunicorn_conf.py)
    ;;
  worker)
    # SIGTERM starts Celery's soft shutdown (CELERY_SOFT_SHUTDOWN_TIMEOUT), after
    # which unfinished tasks are requeued at once instead of after the visibility
    # timeout.
    export REMAP_SIGTERM=SIGQUIT
    default_command=(celery -A config worker --without-gossip --without-mingle)
    ;;
  beat)
    default_command=(celery -A config beat
      --schedule "$(config_value HEARTBEAT_DIR)/celerybeat-schedule" --pidfile=)
    ;;
esac

if [[ $# -gt 0 ]]; then
  log "exec $*"
  exec "$@"
fi
log "exec ${default_command[*]}"
exec "${default_command[@]}"
