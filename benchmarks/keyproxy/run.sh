#!/usr/bin/env bash
# Benchmark claudehub's key proxy against the fake upstream (physical limit) and the original
# Node proxy with keep-alive (seed-ka), in one run. Usage (from anywhere):
#
#   benchmarks/keyproxy/run.sh                       # TARGETS="direct seed-ka project", 2000 held streams
#   BENCH_ARGS="--duration 2 --hold-streams 200" benchmarks/keyproxy/run.sh   # quicker
#   PROXY_EXTRA_ARGS="--KeyProxyApp.allowed_models=claude-sonnet-4-5" benchmarks/keyproxy/run.sh
#                                                    # with the model check every learner gets
#
# Needs the project venv (make setup), Node >= 18 and npm (for the seed proxy, installed into a
# scratch copy outside the repository). Results: benchmarks/keyproxy/results/<stamp>/ (git-ignored).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
SCRATCH="${SCRATCH:-${TMPDIR:-/tmp}/claudehub-keyproxy-bench}"

# 2,000 concurrent streams need ~2,000 sockets in the client, 4,000 in the proxy, 2,000 upstream.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < 8192 )); then
  echo "!! ulimit -n is $(ulimit -n); 2,000 held streams need at least 8192" >&2
fi

# A scratch copy of the harness with the seed's node_modules (never inside the repository).
mkdir -p "$SCRATCH/seed_proxy"
cp "$HERE/bench.py" "$HERE/fake_upstream.py" "$HERE/run_all.sh" "$SCRATCH/"
cp "$HERE/seed_proxy/server.js" "$HERE/seed_proxy/package.json" "$SCRATCH/seed_proxy/"
if [[ ! -d "$SCRATCH/seed_proxy/node_modules" ]]; then
  (cd "$SCRATCH/seed_proxy" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

STAMP="$(date +%Y%m%d-%H%M%S)"
OUT_DIR="${OUT_DIR:-$HERE/results/$STAMP}"
mkdir -p "$OUT_DIR"

# Standalone mode: a throwaway token secret, and a sandbox token minted for the bench user.
export CLAUDEHUB_TOKEN_SECRET="bench-secret-$RANDOM$RANDOM$RANDOM"
PROJECT_PROXY_KEY="$("$VENV/bin/claudehub-keyproxy" mint-token --user bench --ttl 86400)"
export PROJECT_PROXY_KEY
# run_all.sh starts this with HOST, PORT, ANTHROPIC_UPSTREAM and ANTHROPIC_API_KEY set.
# The rate limit is off (one bench user sends ~10k requests/s); usage is recorded as in production.
export PROJECT_PROXY_CMD="$VENV/bin/claudehub-keyproxy --standalone --ip=\$HOST --port=\$PORT \
--upstream-url=\$ANTHROPIC_UPSTREAM --rate-limit=0 --db-url=sqlite:///$OUT_DIR/usage.sqlite \
--KeyProxyApp.max_connections=20000 ${PROXY_EXTRA_ARGS:-}"
export PROJECT_PROXY_LABEL="${PROJECT_PROXY_LABEL:-claudehub}"
export TARGETS="${TARGETS:-direct seed-ka project}"
export BENCH_ARGS="${BENCH_ARGS:---hold-streams 2000}"
export PYTHON="$PY" OUT_DIR

"$SCRATCH/run_all.sh"
