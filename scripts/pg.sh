#!/usr/bin/env bash
# A private PostgreSQL server for tests and trials: `scripts/pg.sh start DIR` runs initdb
# and pg_ctl in DIR (on 127.0.0.1 and a free port, as the `postgres` user when run as
# root) and prints the server's URL; `scripts/pg.sh stop DIR` stops it;
# `scripts/pg.sh restart DIR [SECONDS]` stops it, waits, and starts it on the same port;
# `scripts/pg.sh install` only makes sure PostgreSQL's programs are there. Installs
# PostgreSQL from Debian's packages when it is missing and we are root.
set -euo pipefail
cmd=${1:-}; dir=${2:-}
if [ -z "$cmd" ] || { [ -z "$dir" ] && [ "$cmd" != install ]; }; then
  echo "usage: scripts/pg.sh install | start DIR | stop DIR | restart DIR [SECONDS]" >&2; exit 2
fi
bin=${DWELL_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)}
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  if command -v initdb >/dev/null; then bin=$(dirname "$(command -v initdb)"); fi
fi
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update >&2 && apt-get install -y postgresql >&2
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  else
    echo "pg.sh: PostgreSQL is needed (e.g. apt-get install postgresql)" >&2; exit 1
  fi
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# Start the server in DIR on PORT.
serve() {
  as_pg "$bin/pg_ctl" -D "$1/data" -w -t 60 -l "$1/log" \
    -o "-c listen_addresses=127.0.0.1 -p $2 -k $1 -c max_connections=400 -c fsync=off -c full_page_writes=off" \
    start >&2
}
case "$cmd" in
  install) ;;
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    echo "$port" >"$dir/port"
    serve "$dir" "$port"
    echo "postgres://postgres@127.0.0.1:$port"
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    ;;
  restart)
    dir=$(cd "$dir" && pwd)
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    sleep "${3:-0}"
    serve "$dir" "$(cat "$dir/port")"
    ;;
  *) echo "usage: scripts/pg.sh install | start DIR | stop DIR | restart DIR [SECONDS]" >&2; exit 2 ;;
esac
