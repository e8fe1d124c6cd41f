#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the tests that share an nnclf tune study through it
# (tests/test_tune.py::test_two_machines_share_a_postgresql_study). Source it:
#   . .ci/postgres.sh && start_postgres   -> exports NNCLF_TEST_POSTGRES_URL, or says why not
#   stop_postgres                         -> stops it and removes its data folder
# It uses the distribution's server (Debian: apt-get install postgresql) and installs it when it
# can; without one the test is skipped with a message saying how to run it.

_pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

start_postgres() {
  local bin
  if ! bin="$(_pg_bin)"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "== installing PostgreSQL (apt-get install postgresql) for the shared-study test"
      (timeout 600 apt-get install -y -q postgresql >/dev/null 2>&1 ||
        { timeout 300 apt-get update -q >/dev/null 2>&1 && timeout 600 apt-get install -y -q postgresql >/dev/null 2>&1; }) || true
    fi
    bin="$(_pg_bin)" || { echo "== no PostgreSQL server here: the PostgreSQL test will be skipped"; return 0; }
  fi
  local user="" run=()
  if [ "$(id -u)" = 0 ]; then  # the server refuses to run as root
    id postgres >/dev/null 2>&1 || { echo "== no 'postgres' user to run the server as: the PostgreSQL test will be skipped"; return 0; }
    user=postgres
    run=(runuser -u postgres --)
  fi
  PG_DIR="$(mktemp -d /tmp/nnclf-pg.XXXXXX)"
  [ -n "$user" ] && chown "$user" "$PG_DIR"
  local port=$((20000 + RANDOM % 20000))
  if ! "${run[@]}" "$bin/initdb" -D "$PG_DIR/data" -U nnclf --auth=trust >"$PG_DIR/initdb.log" 2>&1; then
    echo "== initdb failed (see $PG_DIR/initdb.log): the PostgreSQL test will be skipped"
    return 0
  fi
  if ! "${run[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c fsync=off" start >/dev/null; then
    echo "== the PostgreSQL server did not start (see $PG_DIR/server.log): the PostgreSQL test will be skipped"
    return 0
  fi
  PG_CTL=("${run[@]}" "$bin/pg_ctl")
  if ! "${run[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U nnclf nnclf_test; then
    echo "== createdb failed: the PostgreSQL test will be skipped"
    return 0
  fi
  export NNCLF_TEST_POSTGRES_URL="postgresql+psycopg2://nnclf@127.0.0.1:$port/nnclf_test"
  echo "== PostgreSQL $("$bin/postgres" --version | awk "{print \$3}") on 127.0.0.1:$port for the shared-study test"
}

stop_postgres() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    "${PG_CTL[@]}" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
  unset NNCLF_TEST_POSTGRES_URL
}
