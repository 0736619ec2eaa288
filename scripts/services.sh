#!/usr/bin/env bash
# Real PostgreSQL and Redis for the production backend and its tests, from Debian packages, on
# 127.0.0.1 only, with their data under data/services/ (ignored by git).
#   scripts/services.sh start    install (apt-get) if missing, init, start; idempotent
#   scripts/services.sh stop
#   scripts/services.sh status
#   scripts/services.sh env      print the URLs to export (RECSYS_TEST_POSTGRES_URL, ...)
# Ports: PostgreSQL $RECSYS_PG_PORT (55432), Redis $RECSYS_REDIS_PORT (56379).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_port=${RECSYS_PG_PORT:-55432}
redis_port=${RECSYS_REDIS_PORT:-56379}
root=$(pwd)/data/services
pg_data=$root/pg
redis_dir=$root/redis

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$dir" ] && echo "$dir"
}

install_packages() {
  local need=()
  [ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || need+=(postgresql)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v ffmpeg >/dev/null || need+=(ffmpeg)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "services.sh: missing ${need[*]} and not root; install them: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  local sudo=""
  [ "$(id -u)" != 0 ] && sudo=sudo
  echo "services.sh: installing ${need[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null 2>&1
    $sudo apt-get install -y -q "${need[@]}" >/dev/null
  }
}

# PostgreSQL refuses to run as root: run its programs as the postgres user the package created.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_ready() { "$(pg_bin)/pg_isready" -h 127.0.0.1 -p "$pg_port" -q; }
redis_ready() { redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; }

start_pg() {
  local bin
  bin=$(pg_bin)
  if pg_ready; then return 0; fi
  mkdir -p "$root"
  if [ ! -f "$pg_data/PG_VERSION" ]; then
    mkdir -p "$pg_data"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$pg_data"
    chmod 700 "$pg_data"
    as_pg "$bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$pg_data"
  # fsync off: test data only, and it makes the suite several times faster on small disks.
  as_pg "$bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w -t 60 \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k /tmp -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
  local psql=("$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qtA)
  "${psql[@]}" -c "select 1 from pg_roles where rolname='recsys'" | grep -q 1 ||
    "${psql[@]}" -c "create role recsys login superuser"
  "${psql[@]}" -c "select 1 from pg_database where datname='recsys'" | grep -q 1 ||
    "${psql[@]}" -c "create database recsys owner recsys"
}

start_redis() {
  if redis_ready; then return 0; fi
  mkdir -p "$redis_dir"
  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes --dir "$redis_dir" \
    --save "" --appendonly no --logfile "$redis_dir/redis.log" --pidfile "$redis_dir/redis.pid"
  for _ in $(seq 50); do redis_ready && return 0; sleep 0.1; done
  echo "services.sh: redis did not answer on 127.0.0.1:$redis_port" >&2
  exit 1
}

print_env() {
  echo "export RECSYS_TEST_POSTGRES_URL=postgresql+psycopg://recsys@127.0.0.1:$pg_port/recsys"
  echo "export RECSYS_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
}

case "${1:-}" in
  start)
    install_packages
    start_pg
    start_redis
    echo "services.sh: PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port" >&2
    ;;
  stop)
    if [ -n "$(pg_bin)" ] && [ -f "$pg_data/postmaster.pid" ]; then
      as_pg "$(pg_bin)/pg_ctl" -D "$pg_data" -m fast stop >/dev/null || true
    fi
    redis-cli -h 127.0.0.1 -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    ;;
  status)
    pg_ready && echo "postgresql: up on $pg_port" || echo "postgresql: down"
    redis_ready && echo "redis: up on $redis_port" || echo "redis: down"
    ;;
  env) print_env ;;
  *) echo "usage: scripts/services.sh start|stop|status|env" >&2; exit 2 ;;
esac
