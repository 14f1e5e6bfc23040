#!/usr/bin/env bash
# The hostile-load benchmark: warm pulls by 64 clients, timed alone and again while a crowd
# neglects the mirror (2,000 silent sockets, 300 slow-header clients, 300 cold blobs asked
# for and abandoned), then one request for each lie of a lying upstream. Writes the
# "Hostile load" section of bench/RESULTS.md (bench/hostile/report.py) with its targets.
#
# Usage: bench/hostile.sh            (as root: it raises the open-file limit for its clients)
#   env: REGMIRROR_BIN=<binary>      skip `cargo build --release`
#        BENCH_RESULTS=<file>        where to write (default: bench/RESULTS.md)
#        BENCH_KEEP=1                keep the temp dir (logs, data) afterwards
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
OUT_MD=${BENCH_RESULTS:-$BENCH/RESULTS.md}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/regmirror-hostile.XXXXXX")
LOG="$TMP/hostile.log"
RESULTS="$TMP/unused.tsv"
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

cleanup() {
    local rc=$?
    stop_all
    if [[ -n ${BENCH_KEEP:-} || $rc != 0 ]]; then say "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for cmd in python3 openssl curl; do command -v "$cmd" >/dev/null || die "missing $cmd"; done
# 2,300 client sockets plus the mirror's own: far past the usual soft limit of 1,024.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= 8192)) || die "the open-file limit is $(ulimit -n); raise the hard limit to 8192 or more"

if [[ -n ${REGMIRROR_BIN:-} ]]; then
    BIN=$REGMIRROR_BIN
else
    say "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/regmirror"
fi

say "a CA and a certificate for the upstream (127.0.0.1)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
    -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>>"$LOG"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$TMP/up.key" -out "$TMP/up.csr" 2>>"$LOG"
openssl x509 -req -in "$TMP/up.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial -days 1 \
    -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') -out "$TMP/up.pem" 2>>"$LOG"

UP_PORT=$(port)
spawn upstream "$TMP/upstream.log" python3 "$BENCH/hostile/upstream.py" "$UP_PORT" "$TMP/up.pem" "$TMP/up.key" "$TMP/state.json"
UP_PID=$SPAWNED
await_http upstream "$UP_PID" "https://127.0.0.1:$UP_PORT/v2/" --cacert "$TMP/ca.pem"

RM_PORT=$(port)
spawn regmirror "$TMP/regmirror.log" env NO_COLOR=1 "$BIN" serve --insecure-http --listen "127.0.0.1:$RM_PORT" \
    --data-dir "$TMP/data" --upstream "https://127.0.0.1:$UP_PORT" --upstream-ca "$TMP/ca.pem"
RM_PID=$SPAWNED
await_http regmirror "$RM_PID" "http://127.0.0.1:$RM_PORT/v2/"
say "warming the cache with the warm image"
python3 - "$RM_PORT" "$TMP/state.json" <<'PY'
import json, sys, urllib.request
port, state = sys.argv[1], json.load(open(sys.argv[2]))
get = lambda path, accept="*/*": urllib.request.urlopen(urllib.request.Request(
    f"http://127.0.0.1:{port}{path}", headers={"Accept": accept}), timeout=30).read()
get("/v2/bench/warm/manifests/latest", "application/vnd.docker.distribution.manifest.v2+json")
for layer in state["warm_layers"]:
    get(f"/v2/bench/warm/blobs/{layer}")
PY

say "load: unloaded warm pulls, then the hostile crowd, then the lies (about 2 minutes)"
python3 "$BENCH/hostile/load.py" "$RM_PORT" "$RM_PID" "$TMP/data" "$TMP/state.json" "$UP_PORT" "$TMP/ca.pem" \
    "$TMP/out.json" 2>&1 | tee -a "$LOG"

python3 - "$TMP/meta.json" "$BIN" "$ROOT" "$(grep -c 'accept failed' "$TMP/regmirror.log" || true)" <<'PY'
import json, os, resource, subprocess, sys, time
out, binary, root, failures = sys.argv[1:5]
rev = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
# The mirror raises its soft limit to this hard one (inherited from the `ulimit -n` above).
fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rev": rev or "unknown",
           "cpus": os.cpu_count(), "accept_failures": int(failures), "fd_limit": fd_limit,
           "first_request_timeout_s": 10}, open(out, "w"))
PY
python3 "$BENCH/hostile/report.py" "$TMP/out.json" "$TMP/meta.json" "$OUT_MD"
