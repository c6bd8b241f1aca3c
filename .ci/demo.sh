# Sourced by the CI scripts that need a running demo (embedded PostgreSQL, the simulator
# and demo data). After `start_demo`: $base is the gateway's address, $admin its admin
# token, $data a scratch directory (removed on exit), and `api_key SCOPES_JSON` prints a
# new API key with those scopes.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_demo() {
  local bin=${GATEWAY_BIN:-target/debug/uipath-gateway}
  [ -x "$bin" ] || cargo build --quiet
  data=$(mktemp -d /tmp/ugw-ci-demo.XXXXXX)
  chmod 711 "$data"
  local port sim_port
  port=$(free_port)
  sim_port=$(free_port)
  admin="ci-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  GATEWAY_DATA_DIR="$data/data" GATEWAY_PORT=$port GATEWAY_ADMIN_TOKEN=$admin \
    GATEWAY_RATE_LIMITS__API_KEY_PER_SECOND=0 GATEWAY_RATE_LIMITS__HOOK_PER_SECOND=0 \
    GATEWAY_LOG_FORMAT=json GATEWAY_LOG_LEVEL=warn \
    "$bin" demo --sim-port "$sim_port" >"$data/gateway.log" 2>&1 &
  demo_pid=$!
  trap stop_demo EXIT
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 120); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$demo_pid" 2>/dev/null || { cat "$data/gateway.log"; exit 1; }
    sleep 0.5
  done
  echo "the demo did not become ready" >&2
  cat "$data/gateway.log" >&2
  exit 1
}

stop_demo() {
  kill "$demo_pid" 2>/dev/null || true
  wait "$demo_pid" 2>/dev/null || true
  rm -rf "$data"
}

api_key() {
  curl -fsS -X POST "$base/api-keys" -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' -d "{\"name\":\"ci-$RANDOM\",\"scopes\":$1}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

# Fails if the gateway logged an error of its own (actix logs a malformed request it
# refused with 400 as an error, so only our target counts).
no_logged_errors() {
  if grep '"level":"ERROR"' "$data/gateway.log" | grep -q '"target":"uipath_gateway'; then
    echo "the gateway logged errors during the run:" >&2
    grep '"level":"ERROR"' "$data/gateway.log" | grep '"target":"uipath_gateway' | head -20 >&2
    return 1
  fi
}
