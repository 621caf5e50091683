#!/usr/bin/env bash
# The replicas scenario of the interop suite: two authorization servers on one PostgreSQL database
# and two resource servers, each pair behind haproxy with round robin per request (the
# configuration of docs/SCALING.md, tests/haproxy.cfg). The TypeScript SDK's whole flow, as alice
# and as bob, runs through the balancer, so that its pages, token requests and tool calls cross
# replicas. Then PostgreSQL itself is stopped and started again: while it is down, what needs it
# gets 503 with `Retry-After` and tool calls go on; once it is back, the replicas recover without
# a restart.
#
# Stopping PostgreSQL needs root and Debian's pg_ctlcluster (CI has both); elsewhere that check
# fails and says why. The scratch database is dropped at the end.
#
# Environment (from run.sh): BIN_DIR (the release binaries), NODE, WORK (logs).
# Prints `PASS name` / `FAIL name: reason` lines.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PSQL=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qtA)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

fail_all() {
  echo "FAIL balanced ts-sdk through haproxy: $1"
  echo "FAIL balanced postgresql restart: $1"
  exit 1
}
[ -x "$HAPROXY" ] || fail_all "haproxy is not installed (.ci/run installs it)"
pg_isready -h 127.0.0.1 -q || fail_all "PostgreSQL is not reachable at 127.0.0.1:5432"

read -r AS_FRONT RS_FRONT A1 A2 R1 R2 < <(python3 -c '
import socket
s = [socket.socket() for _ in range(6)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
ISSUER="http://localhost:$AS_FRONT"
RESOURCE="http://localhost:$RS_FRONT"
DATABASE="mcp_oauth_interop_$(python3 -c 'import secrets; print(secrets.token_hex(6))')"
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DATABASE"
SECRETS=(--key-encryption-secret "$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
  --session-secret "$(python3 -c 'import secrets; print(secrets.token_hex(24))')")
CONFIG=$(mktemp -d "${TMPDIR:-/tmp}/mcp-oauth-balanced.XXXXXX")
PIDS=()

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  "${PSQL[@]}" -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$CONFIG"
}
trap stop_all EXIT

"${PSQL[@]}" -c "CREATE DATABASE $DATABASE" >/dev/null || fail_all "cannot create the database $DATABASE"

# The configuration of docs/SCALING.md (tests/haproxy.cfg), with these ports.
sed -e "s/@AUTH_FRONT@/$AS_FRONT/" -e "s/@AUTH_1@/$A1/" -e "s/@AUTH_2@/$A2/" \
  -e "s/@MCP_FRONT@/$RS_FRONT/" -e "s/@MCP_1@/$R1/" -e "s/@MCP_2@/$R2/" \
  "$HERE/../haproxy.cfg" >"$CONFIG/haproxy.cfg"
"$HAPROXY" -c -q -f "$CONFIG/haproxy.cfg" || fail_all "haproxy refuses the configuration"
"$HAPROXY" -db -f "$CONFIG/haproxy.cfg" >"$WORK/balanced-haproxy.log" 2>&1 &
PIDS+=($!)

# Every request reaches the servers from the balancer's address: the per-source limits are lifted.
NO_LIMITS=(--rate-authorize 0 --rate-register 0 --rate-token 0 --rate-login 0)
for port in $A1 $A2; do
  "$BIN_DIR/auth-server" --issuer "$ISSUER" --resource "$RESOURCE" --auth-listen "127.0.0.1:$port" \
    --database-url "$DATABASE_URL" --database-timeout 1 "${SECRETS[@]}" "${NO_LIMITS[@]}" \
    >"$WORK/balanced-auth-$port.log" 2>&1 &
  PIDS+=($!)
done
for port in $R1 $R2; do
  "$BIN_DIR/mcp-server" --authorization-server "$ISSUER" --resource-server "$RESOURCE" \
    --mcp-listen "127.0.0.1:$port" >"$WORK/balanced-mcp-$port.log" 2>&1 &
  PIDS+=($!)
done

ready=0
for _ in $(seq 1 150); do
  if curl -fsS "$ISSUER/readyz" >/dev/null 2>&1 && curl -fsS "$RESOURCE/readyz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
[ "$ready" = 1 ] || fail_all "the replicas did not become ready behind haproxy (logs: $WORK/balanced-*.log)"

# The TypeScript SDK as alice and as bob, every request through the balancer.
MCP_URL="$RESOURCE/mcp" ISSUER="$ISSUER" TS_SDK_FLOWS=users CHECK_PREFIX="balanced " \
  INTEROP_SCREENSHOTS=0 SCRATCH="" timeout 240 "$NODE" "$HERE/ts_sdk.mjs"

# --- A PostgreSQL restart ----------------------------------------------------------------------
NAME="balanced postgresql restart (503 with Retry-After while it is down, then recovery)"
REGISTRATION='{"redirect_uris":["http://127.0.0.1:53682/callback"],"token_endpoint_auth_method":"none"}'
# The status and Retry-After of one registration through the balancer, as "STATUS RETRY-AFTER".
register() {
  curl -sS -o /dev/null -D - -X POST -H 'content-type: application/json' -d "$REGISTRATION" \
    --max-time 10 "$ISSUER/register" 2>/dev/null |
    awk 'NR == 1 { status = $2 } tolower($1) == "retry-after:" { sub(/\r$/, "", $2); retry = $2 }
         END { print status, (retry == "" ? "-" : retry) }'
}
# The status of a tools/list without a token at the resource servers, through the balancer: its
# 401 challenge needs no database, so it must not change while the database is down.
challenge() {
  curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}' --max-time 10 "$RESOURCE/mcp"
}
CLUSTER=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
if [ "$(register)" != "201 -" ]; then
  echo "FAIL $NAME: a registration before the restart was refused"
elif [ "$(id -u)" != 0 ] || ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$CLUSTER" ]; then
  echo "FAIL $NAME: stopping PostgreSQL needs root and pg_ctlcluster"
else
  pg_ctlcluster --skip-systemctl-redirect "$CLUSTER" main stop --mode fast
  refused="" wrong=""
  # Three seconds down: first the replicas refuse, then (their health checks failed) haproxy.
  for _ in $(seq 1 10); do
    answer=$(register)
    case "$answer" in
      "503 "[0-9]*) refused="$refused $answer" ;;
      *) wrong="a registration while the database was down got '$answer'" ;;
    esac
    [ "$(challenge)" = 401 ] || wrong="the resource servers stopped answering while the database was down"
    sleep 0.3
  done
  pg_ctlcluster --skip-systemctl-redirect "$CLUSTER" main start
  for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -q && break; sleep 0.5; done
  recovered=0
  for _ in $(seq 1 100); do
    if [ "$(register)" = "201 -" ]; then
      recovered=1
      break
    fi
    sleep 0.2
  done
  if [ -n "$wrong" ]; then
    echo "FAIL $NAME: $wrong"
  elif [ -z "$refused" ]; then
    echo "FAIL $NAME: no registration was refused while the database was down"
  elif [ "$recovered" != 1 ]; then
    echo "FAIL $NAME: the replicas did not recover within 20 s of PostgreSQL's start"
  else
    echo "PASS $NAME"
  fi
fi
