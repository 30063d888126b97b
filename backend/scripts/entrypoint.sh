#!/usr/bin/env bash
# Container entrypoint: validate -> wait for dependencies -> migrate (locked) -> exec.
#
# Usage: entrypoint.sh [ROLE] [COMMAND...]
#   ROLE is web, worker, beat or migrate (default: $APP_ROLE, else web).
#   A COMMAND after the role runs instead of the role's process, after the same
#   validation and waits (e.g. `entrypoint.sh web python manage.py shell`).
# Every rule about variables lives in runtime/env/; this script only asks it.
# The steps before exec run in one Python process: apps/core/management/commands/prestart.py.
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

# 1. Validate: loading the settings runs the registry's checks and prints one block
#    naming every bad variable. 2-3. Wait for PostgreSQL and Redis (backoff, wall-clock
#    DEPENDENCY_WAIT_TIMEOUT), then migrations: under a PostgreSQL advisory lock for
#    migrate (and web with RUN_MIGRATIONS), a bounded wait for worker and beat.
#    One Python process for all of it (each start costs ~0.4 s). It records the role
#    for probes, and hands back, on fd 3, the assignments the role's process needs
#    (PROMETHEUS_MULTIPROC_DIR, the beat schedule path); its stdout stays the log.
log "validating configuration"
exec 4>&1
if ! assignments=$(python -m apps.core.management.commands.prestart "${role}" --exports-fd 3 3>&1 1>&4); then
  log "not started: see the lines above"
  exit 1
fi
exec 4>&-
eval "${assignments}"

if [[ "${role}" == "migrate" && $# -eq 0 ]]; then
  log "migrations applied; exiting"
  exit 0
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
    # shellcheck disable=SC2154 # assigned by prestart's output above
    default_command=(celery -A config beat --schedule "${beat_schedule}" --pidfile=)
    ;;
esac

if [[ $# -gt 0 ]]; then
  log "exec $*"
  exec "$@"
fi
log "exec ${default_command[*]}"
exec "${default_command[@]}"
