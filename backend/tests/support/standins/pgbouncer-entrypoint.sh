#!/bin/bash
# The stand-in's entrypoint: writes /etc/pgbouncer/pgbouncer.ini and userlist.txt
# from the environment, as edoburu/pgbouncer's does, for these variables only:
#   DATABASE_URL (postgres://user:password@host[:port]/dbname), POOL_MODE,
#   DEFAULT_POOL_SIZE, RESERVE_POOL_SIZE, MAX_CLIENT_CONN, MAX_DB_CONNECTIONS,
#   AUTH_TYPE, LISTEN_PORT, SERVER_LIFETIME, ADMIN_USERS.
# Any other variable of the real image's interface is refused, so that a shipped
# file relying on one fails here instead of being silently ignored.
set -euo pipefail
SUPPORTED=" DATABASE_URL POOL_MODE DEFAULT_POOL_SIZE RESERVE_POOL_SIZE MAX_CLIENT_CONN \
MAX_DB_CONNECTIONS AUTH_TYPE LISTEN_PORT SERVER_LIFETIME ADMIN_USERS "
KNOWN="DB_HOST DB_PORT DB_USER DB_PASSWORD DB_NAME AUTH_FILE AUTH_USER AUTH_QUERY \
AUTH_HBA_FILE LISTEN_ADDR CLIENT_ENCODING POOL_SIZE MIN_POOL_SIZE RESERVE_POOL_TIMEOUT \
MAX_USER_CONNECTIONS SERVER_ROUND_ROBIN IGNORE_STARTUP_PARAMETERS SERVER_RESET_QUERY \
SERVER_CHECK_QUERY SERVER_IDLE_TIMEOUT QUERY_TIMEOUT QUERY_WAIT_TIMEOUT \
CLIENT_IDLE_TIMEOUT IDLE_TRANSACTION_TIMEOUT STATS_USERS ADMIN_PASSWORDS \
CLIENT_TLS_SSLMODE SERVER_TLS_SSLMODE MAX_PREPARED_STATEMENTS"
for name in $KNOWN; do
  if [[ -n "${!name:-}" && "$SUPPORTED" != *" $name "* ]]; then
    echo "pgbouncer stand-in: $name is not implemented here" >&2
    exit 64
  fi
done

url=${DATABASE_URL:?"DATABASE_URL is required"}
if [[ ! $url =~ ^postgres(ql)?://([^:@/]+):([^@/]*)@([^:/]+)(:([0-9]+))?/([^?]+)$ ]]; then
  echo "pgbouncer stand-in: DATABASE_URL must be postgres://user:password@host[:port]/db" >&2
  exit 64
fi
user=${BASH_REMATCH[2]} password=${BASH_REMATCH[3]} host=${BASH_REMATCH[4]}
port=${BASH_REMATCH[6]:-5432} dbname=${BASH_REMATCH[7]}

dir=/etc/pgbouncer
if [[ ! -f $dir/pgbouncer.ini ]]; then
  case ${AUTH_TYPE:-md5} in
    plain|scram-sha-256) secret=$password ;;
    *) secret="md5$(printf '%s%s' "$password" "$user" | md5sum | cut -d' ' -f1)" ;;
  esac
  printf '"%s" "%s"\n' "$user" "$secret" >"$dir/userlist.txt"
  {
    echo "[databases]"
    echo "$dbname = host=$host port=$port auth_user=$user"
    echo "[pgbouncer]"
    echo "listen_addr = 0.0.0.0"
    echo "listen_port = ${LISTEN_PORT:-5432}"
    echo "unix_socket_dir ="
    echo "auth_file = $dir/userlist.txt"
    echo "auth_type = ${AUTH_TYPE:-md5}"
    echo "admin_users = ${ADMIN_USERS:-postgres}"
    echo "ignore_startup_parameters = extra_float_digits"
    for name in POOL_MODE DEFAULT_POOL_SIZE RESERVE_POOL_SIZE MAX_CLIENT_CONN \
      MAX_DB_CONNECTIONS SERVER_LIFETIME; do
      [[ -n "${!name:-}" ]] && echo "${name,,} = ${!name}"
    done
  } >"$dir/pgbouncer.ini"
fi
exec "$@"
