#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests: `start DIR` initialises a cluster in DIR as an unprivileged user, starts it
# on a free loopback port (and a socket in DIR) and prints the URL of a database the tests may use; `stop DIR` stops
# it and removes DIR. Debian's postgresql-15 server binaries; `make deps` installs them.
set -euo pipefail
action=${1:?start or stop}
dir=${2:?directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "postgres.sh: PostgreSQL server binaries not found (apt-get install postgresql-15)" >&2; exit 1; }
as_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$action" in
start)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  chmod 700 "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$password" > "$dir/.pw"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/.pw"
  as_user "$bin/initdb" -D "$dir/data" -U dispatch --pwfile="$dir/.pw" -A scram-sha-256 --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c shared_buffers=64MB" start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgres://dispatch:$password@127.0.0.1:$port/postgres?sslmode=disable"
  ;;
stop)
  [ -d "$dir/data" ] && as_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
*)
  echo "postgres.sh: start or stop" >&2; exit 2
  ;;
esac
