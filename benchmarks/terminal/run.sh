#!/usr/bin/env bash
# claudehub terminal benchmark: the Claude terminal endpoint ({base_url}claude/terminal) through
# configurable-http-proxy, against a raw pty, ttyd, terminado (direct and through CHP) and a
# stock jupyter-server + jupyter_server_terminals, all in one run, one table.
#
#   benchmarks/terminal/run.sh            (from the repository root, after `make setup`)
#
# The harness is ../shared/bench/terminal (copied here: bench.py, terminado_server.py,
# setup.sh, requirements.txt), plus a `claudehub` protocol in bench.py whose flood client
# speaks the page's pause/resume flow control (the watermarks of static/claude.js).
# The claudehub server is the production single-user server (serve_singleuser.py: a stand-in
# hub API + `python -m claudehub.server_ext.singleuser`), running bash (ClaudeHubApp.command)
# with session_mode=per-connection so the 50-terminal test gets 50 shells (the product runs
# one shared Claude per user server; transport, handler and flow control are the same code).
# Knobs: the TB_* variables of bench.py (see ../shared/bench/terminal/README.md).
set -euo pipefail
# job control: background jobs then keep SIGINT at its default (see README: SIGINT caveat)
set -m
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$HERE"
TMPBASE="${TMPDIR:-/tmp}"
export TB_VENV="${TB_VENV:-$TMPBASE/termbench-venv}"
export TB_TOOLS="${TB_TOOLS:-$TMPBASE/termbench-tools}"
# the project's own configurable-http-proxy (package.json) instead of setup.sh's npm install
TTYD="$(TB_WITH_CHP=0 bash ./setup.sh | tail -n1)"
PY="$TB_VENV/bin/python"            # benchmark client, terminado reference server
JPY="$ROOT/.venv/bin/python"        # jupyter servers (the project's environment)
CHP="$ROOT/node_modules/.bin/configurable-http-proxy"
[ -x "$CHP" ] || { echo "missing $CHP: run 'make setup' first" >&2; exit 1; }
[ -f "$ROOT/claudehub/server_ext/static/vendor/xterm.js" ] || echo "note: vendor assets missing (make setup); the terminal does not need them" >&2

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TTYD_PORT="$(free_port)"; TERMINADO_PORT="$(free_port)"; JS_PORT="$(free_port)"
CH_PORT="$(free_port)"; CHP_PORT="$(free_port)"; CHP_API_PORT="$(free_port)"
TOKEN="termbench-$$-$RANDOM"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="${TB_RESULTS:-$TMPBASE/claudehub-termbench}/$STAMP"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
SHELL_CMD=(bash --norc --noprofile -i)
export PS1='$ ' HISTFILE=/dev/null TERM=xterm-256color

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() {  # url [header]
  for _ in $(seq 150); do
    if curl -fs -o /dev/null -H "${2:-X-None: 1}" "$1"; then return 0; fi
    sleep 0.2
  done
  echo "$1 did not come up" >&2
  return 1
}
wait_port() {
  for _ in $(seq 150); do
    if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2).close()" "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "port $1 did not come up" >&2
  return 1
}

# --- reference servers
# under /ttyd, so that CHP can route that prefix to it unchanged (ttyd+chp)
"$TTYD" -d 1 -i 127.0.0.1 -p "$TTYD_PORT" -b /ttyd -W -- "${SHELL_CMD[@]}" >"$OUT/ttyd.log" 2>&1 &
TTYD_PID=$!; pids+=("$TTYD_PID")
"$PY" terminado_server.py --port "$TERMINADO_PORT" -- "${SHELL_CMD[@]}" >"$OUT/terminado.log" 2>&1 &
TERMINADO_PID=$!; pids+=("$TERMINADO_PID")

# stock jupyter-server + jupyter_server_terminals (claudehub's extension switched off)
cat >"$WORK/stock_config.py" <<EOF
c.ServerApp.jpserver_extensions = {"claudehub.server_ext": False, "jupyter_server_terminals": True}
c.ServerApp.terminado_settings = {"shell_command": ["bash", "--norc", "--noprofile", "-i"]}
c.IdentityProvider.token = "$TOKEN"
c.ServerApp.root_dir = "$WORK"
EOF
"$JPY" -m jupyter_server --config="$WORK/stock_config.py" --allow-root --no-browser \
  --ip=127.0.0.1 --port="$JS_PORT" >"$OUT/jupyter-server.log" 2>&1 &
JS_PID=$!; pids+=("$JS_PID")

# --- claudehub: the user's server as production runs it (python -m claudehub.server_ext.singleuser,
# i.e. jupyterhub-singleuser + the extension) under /user/bench/, against a stand-in hub API,
# bash in the terminal, one process per connection; behind CHP like JupyterHub routes it
"$JPY" serve_singleuser.py --port "$CH_PORT" --info "$WORK/claudehub.info" >"$OUT/claudehub.log" 2>&1 &
CH_LAUNCHER_PID=$!; pids+=("$CH_LAUNCHER_PID")

export CONFIGPROXY_AUTH_TOKEN="termbench-chp-$$"
"$CHP" --ip 127.0.0.1 --port "$CHP_PORT" --api-ip 127.0.0.1 --api-port "$CHP_API_PORT" \
  --default-target "http://127.0.0.1:$TERMINADO_PORT" --log-level warn >"$OUT/chp.log" 2>&1 &
CHP_PID=$!; pids+=("$CHP_PID")

wait_port "$TTYD_PORT"; wait_port "$TERMINADO_PORT"; wait_port "$CHP_API_PORT"
wait_http "http://127.0.0.1:$JS_PORT/api/status" "Authorization: token $TOKEN"
for _ in $(seq 300); do [ -s "$WORK/claudehub.info" ] && break; sleep 0.2; done
[ -s "$WORK/claudehub.info" ] || { echo "the claudehub single-user server did not come up; see $OUT/claudehub.log" >&2; exit 1; }
read -r CH_PID _ _ CH_TOKEN <"$WORK/claudehub.info"
# route /user/bench/ to claudehub, the way JupyterHub adds a user's server to CHP
curl -fs -X POST -H "Authorization: token $CONFIGPROXY_AUTH_TOKEN" \
  -d "{\"target\": \"http://127.0.0.1:$CH_PORT\"}" "http://127.0.0.1:$CHP_API_PORT/api/routes/user/bench"
# and /ttyd to ttyd: the reference C server behind the same proxy hop (ttyd+chp)
curl -fs -X POST -H "Authorization: token $CONFIGPROXY_AUTH_TOKEN" \
  -d "{\"target\": \"http://127.0.0.1:$TTYD_PORT\"}" "http://127.0.0.1:$CHP_API_PORT/api/routes/ttyd"
if curl -fs -o /dev/null -H "Authorization: token $TOKEN" "http://127.0.0.1:$JS_PORT/claude"; then
  echo "the stock jupyter-server has the claudehub extension loaded" >&2; exit 1
fi

{
  echo "date: $(date -Is)"
  echo "host: $(uname -srm), cpus: $(nproc), python: $("$JPY" -V 2>&1)"
  echo "ttyd: $("$TTYD" --version 2>&1)"
  echo "terminado/tornado/websockets (client venv): $("$PY" -c 'import terminado,tornado,websockets;print(terminado.__version__,tornado.version,websockets.__version__)')"
  echo "jupyter_server/tornado (project venv): $("$JPY" -c 'import jupyter_server,tornado;print(jupyter_server.__version__,tornado.version)')"
  echo "configurable-http-proxy: $("$CHP" --version)"
  echo "shell: ${SHELL_CMD[*]}"
  env | grep '^TB_' | grep -v -i -E 'cookie|header|token|^TB_VENV=|^TB_TOOLS=' | sort || true
} | tee "$OUT/env.txt"

files=()
run() {
  local label="$1"; shift
  echo "== $label" >&2
  "$PY" bench.py run --label "$label" --out "$OUT/$label.json" "$@" 2>>"$OUT/progress.log"
  files+=("$OUT/$label.json")
}
AUTH="Authorization: token $TOKEN"
CH_AUTH="Authorization: token $CH_TOKEN"
ONLY="${TB_TARGETS:-raw,ttyd,ttyd-nodeflate,ttyd+chp,terminado,terminado+chp,jupyter-server,claudehub,claudehub+chp}"
want() { [[ ",$ONLY," == *",$1,"* ]]; }

want raw && run raw --target raw
want ttyd && run ttyd --target ttyd --url "ws://127.0.0.1:$TTYD_PORT/ttyd/ws" --server-pid "$TTYD_PID"
want ttyd-nodeflate && TB_WS_COMPRESSION=none run ttyd-nodeflate --target ttyd --url "ws://127.0.0.1:$TTYD_PORT/ttyd/ws" --server-pid "$TTYD_PID"
want ttyd+chp && run ttyd+chp --target ttyd --url "ws://127.0.0.1:$CHP_PORT/ttyd/ws" --server-pid "$TTYD_PID"
want terminado && run terminado --target terminado --url "ws://127.0.0.1:$TERMINADO_PORT/websocket" --server-pid "$TERMINADO_PID"
want terminado+chp && run terminado+chp --target terminado --url "ws://127.0.0.1:$CHP_PORT/websocket" --server-pid "$TERMINADO_PID"
want jupyter-server && run jupyter-server --target custom --protocol terminado \
  --url "ws://127.0.0.1:$JS_PORT/terminals/websocket/{name}" \
  --create-url "http://127.0.0.1:$JS_PORT/api/terminals" --headers "$AUTH" --server-pid "$JS_PID"
want claudehub && run claudehub --target custom --protocol claudehub \
  --url "ws://127.0.0.1:$CH_PORT/user/bench/claude/terminal" --headers "$CH_AUTH" --server-pid "$CH_PID"
# the same endpoint driven as a plain terminado client (no pause/resume/ack), for comparison
want claudehub-plain && run claudehub-plain --target custom --protocol terminado \
  --url "ws://127.0.0.1:$CH_PORT/user/bench/claude/terminal" --headers "$CH_AUTH" --server-pid "$CH_PID"
want claudehub+chp && run claudehub+chp --target custom --protocol claudehub \
  --url "ws://127.0.0.1:$CHP_PORT/user/bench/claude/terminal" --headers "$CH_AUTH" --server-pid "$CH_PID"

"$PY" bench.py table "${files[@]}" | tee "$OUT/table.txt"
echo "results: $OUT"
