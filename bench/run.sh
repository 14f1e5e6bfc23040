#!/usr/bin/env bash
# Benchmarks: regmirror side by side with the reference registry's proxy mode and nginx, in
# one run on one machine, everything on 127.0.0.1. Ratios are the result; absolute
# numbers depend on the machine.
#
#   upstream      Debian's docker-registry (distribution 2.8), plain HTTP, the images pushed
#   regmirror     `serve --insecure-http`, and a second process with --tls-cert/--tls-key
#                 on the same data directory for the TLS runs
#   distribution  docker-registry with `proxy: remoteurl:` the upstream, plain and TLS
#                 (a second process on the same storage)
#   nginx         the same files from disk at the same URLs (/v2/<repo>/blobs/<digest>),
#                 sendfile on: the practical ceiling for a cache hit; plain, TLS and h2
# One certificate (regmirror's `cert init`: its CA, a server certificate for 127.0.0.1) is
# used by every TLS listener.
#
# Measured (best of BENCH_REPS unless said; cold rounds start from empty caches):
#   1 cold pull of each image with skopeo (to dir:), vs a direct pull from the upstream
#   2 warm pull of each image, vs direct and nginx
#   3 single-stream GET of the 1 GiB blob: plain, TLS HTTP/1.1, TLS HTTP/2 (curl), with the
#     server's CPU time; and cold, into empty caches
#   4 HEAD manifest with 64 connections (bench/loadgen: wrk 4.1 cannot do HEAD), 1 MiB blob
#     GETs with 64 and 16 connections (wrk)
#   5 16 concurrent cold pulls of the 60 MiB image: wall time, and the bytes the upstream
#     sent (its access log); also spread over a fleet of three regmirror instances (--fleet)
#   6 regmirror's peak RSS (VmHWM, reset through /proc/PID/clear_refs before each) during
#     the 1 GiB cold pull, warm pull and GETs
#   7 restart with 100k cached blobs: exec to TCP accept, to the first 200, and index_ms
#   8 on a one-node Garage bucket (when garage is installed): the 1 GiB GET cold through it and
#     from it into an empty data directory, with peak RSS; the 60 MiB pull likewise; 16
#     concurrent cold pulls over a fleet of three on one bucket, with the upstream's bytes
#   + criterion micro-benchmarks (benches/hot_paths.rs) and sha256sum on 64 MiB
#   + perf profiles of regmirror (when perf works; BENCH_PERF=0 skips them)
# Then bench/report.py prints one table with the ratios and writes bench/RESULTS.md.
#
# Needs root only to install what is missing (apt-get: docker-registry skopeo nginx wrk
# curl openssl python3 coreutils) and for /proc/PID/clear_refs. About 10 minutes on 2 cores;
# needs ~6 GiB free under TMPDIR. Every process it starts is stopped by pid at the end.
#
# Usage: bench/run.sh
# Env:   BENCH_REPS=5           repetitions of warm, throughput and rate runs (best taken)
#        BENCH_COLD_REPS=3      cold rounds (fresh caches), for steps 1 and 5
#        BENCH_SECONDS=3        length of each request-rate run
#        BENCH_SRC=<repo>       cargo project to build and micro-benchmark (default: this repo)
#        REGMIRROR_REV          what to call the build in RESULTS.md (default: git describe)
#        BENCH_RESULTS=<file>   where to write RESULTS.md (default: bench/RESULTS.md)
#        BENCH_PERF=0           no perf profiles
#        BENCH_KEEP=1           keep the temp dir (logs, data) afterwards
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
SRC=$(cd "${BENCH_SRC:-$ROOT}" && pwd)
REPS=${BENCH_REPS:-5}
COLD_REPS=${BENCH_COLD_REPS:-3}
SECS=${BENCH_SECONDS:-3}
CONC=16
RESTART_BLOBS=100000
OUT_MD=${BENCH_RESULTS:-$BENCH/RESULTS.md}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/regmirror-bench.XXXXXX")
LOG="$TMP/bench.log"
RESULTS="$TMP/results.tsv"
: >"$RESULTS"
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

cleanup() {
    local rc=$?
    stop_all
    if [[ -n ${BENCH_KEEP:-} || $rc != 0 ]]; then
        say "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
STARTED=$EPOCHREALTIME
LOAD_START=$(cat /proc/loadavg)

# ------------------------------------------------------------ prerequisites
declare -A PKG=([docker-registry]=docker-registry [skopeo]=skopeo [nginx]=nginx [wrk]=wrk
    [curl]=curl [openssl]=openssl [python3]=python3 [sha256sum]=coreutils)
missing=()
for cmd in "${!PKG[@]}"; do command -v "$cmd" >/dev/null || missing+=("${PKG[$cmd]}"); done
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root to install them with apt-get"
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[[ -w /proc/self/clear_refs ]] || die "/proc/PID/clear_refs is not writable (run as root)"

TARGET=${CARGO_TARGET_DIR:-$SRC/target}
say "cargo build --release ($SRC)"
(cd "$SRC" && cargo build --release --quiet) || die "cargo build --release failed"
BIN="$TARGET/release/regmirror"
REV=${REGMIRROR_REV:-$(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)}
say "building bench/loadgen"
cargo build --release --quiet --manifest-path "$BENCH/loadgen/Cargo.toml" --target-dir "$ROOT/target/bench-loadgen" ||
    die "building bench/loadgen failed"
LOADGEN="$ROOT/target/bench-loadgen/release/loadgen"

# ------------------------------------------------------- micro-benchmarks first
# CPU-bound, so before any server runs. Criterion's bencher format: one line per bench.
say "criterion: cargo bench --bench hot_paths"
(cd "$SRC" && cargo bench --quiet --bench hot_paths -- --output-format bencher \
    --warm-up-time 1 --measurement-time 2) >"$TMP/criterion.txt" 2>"$TMP/criterion.err" ||
    die "cargo bench failed: $(tail -n 5 "$TMP/criterion.err")"
while read -r _ name _ _ ns _; do
    record "micro.$name" "${ns//,/}" ns
done < <(grep '^test .* bench: ' "$TMP/criterion.txt")
head -c $((64 << 20)) /dev/urandom >"$TMP/64MiB"
sha256sum "$TMP/64MiB" >/dev/null # into the page cache
for ((i = 0; i < REPS; i++)); do
    t0=$(now)
    sha256sum "$TMP/64MiB" >/dev/null
    record micro.sha256sum_64MiB "$(awk -v s="$(since "$t0")" 'BEGIN { printf "%d", s * 1e9 }')" ns
done
rm -f "$TMP/64MiB"

# ------------------------------------------------------------------- images
say "generating images (urandom layers: 20 MiB, 60 MiB in 5 layers, 1 GiB)"
python3 "$BENCH/mkimages.py" images "$TMP/images"
# IMG_*[key]: repo, tag, manifest digest, bytes of the blobs (config + layers), blob count.
declare -A IMG_REPO=() IMG_TAG=() IMG_MANIFEST=() IMG_BLOB_BYTES=() IMG_BLOBS=()
KEYS=(small medium big)
while read -r key repo tag manifest bytes n; do
    IMG_REPO[$key]=$repo IMG_TAG[$key]=$tag IMG_MANIFEST[$key]=$manifest
    IMG_BLOB_BYTES[$key]=$bytes IMG_BLOBS[$key]=$n
done < <(python3 - "$TMP/images/summary.json" <<'EOF'
import json, sys
for i in json.load(open(sys.argv[1]))["images"]:
    print(i["key"], i["repo"], i["tag"], i["manifest"], i["config_size"] + sum(i["layer_sizes"]),
          1 + len(i["layers"]))
EOF
)
blob_file() { printf '%s/images/%s/blobs/sha256/%s\n' "$TMP" "$1" "${2#sha256:}"; }
blobs_of() { # KEY: config and layer digests
    python3 - "$TMP/images/summary.json" "$1" <<'EOF'
import json, sys
for i in json.load(open(sys.argv[1]))["images"]:
    if i["key"] == sys.argv[2]:
        print("\n".join([i["config"]] + i["layers"]))
EOF
}
BIG_LAYER=$(blobs_of big | tail -n 1)
SMALL_1MIB=$(blobs_of small | tail -n 1) # the 1 MiB layer
[[ $(stat -c %s "$(blob_file small "$SMALL_1MIB")") == $((1 << 20)) ]] || die "small's last layer is not 1 MiB"
OCI_MT=application/vnd.oci.image.manifest.v1+json
ACCEPT="Accept: $OCI_MT, application/vnd.docker.distribution.manifest.v2+json"

# ---------------------------------------------------------------- certificates
say "one certificate for every TLS listener (regmirror cert init)"
"$BIN" cert init --data-dir "$TMP/pki" --hostname localhost --ip 127.0.0.1 >"$TMP/cert-init.log" 2>&1 ||
    die "cert init failed"
CERT="$TMP/pki/certs/server.crt" KEY="$TMP/pki/certs/server.key" CA="$TMP/pki/certs/ca.crt"

# ------------------------------------------------------------------ upstream
UP="127.0.0.1:$(port)"
UP_LOG="$TMP/upstream.log"
cat >"$TMP/upstream.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $TMP/upstream
http:
  addr: $UP
EOF
spawn upstream "$UP_LOG" docker-registry serve "$TMP/upstream.yml"
UP_PID=$SPAWNED
await_http upstream "$UP_PID" "http://$UP/v2/"

push_blob() { # REPO FILE DIGEST: a monolithic upload
    local location
    location=$(curl -fsS -X POST -o /dev/null -D - "http://$UP/v2/$1/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
    [[ $location == http* ]] || location="http://$UP$location"
    curl -fsS -X PUT -H 'Content-Type: application/octet-stream' -T "$2" -o /dev/null "$location&digest=$3"
}
say "pushing the images to the upstream"
for key in "${KEYS[@]}"; do
    while read -r digest; do
        push_blob "${IMG_REPO[$key]}" "$(blob_file "$key" "$digest")" "$digest" || die "push of $digest failed"
    done < <(blobs_of "$key")
    curl -fsS -X PUT -H "Content-Type: $OCI_MT" --data-binary @"$(blob_file "$key" "${IMG_MANIFEST[$key]}")" \
        -o /dev/null "http://$UP/v2/${IMG_REPO[$key]}/manifests/${IMG_TAG[$key]}" || die "manifest push failed"
done

# --------------------------------------------------------------------- nginx
# The image files hard-linked at the registry's URL shape; manifests by tag and digest.
WWW="$TMP/www"
for key in "${KEYS[@]}"; do
    dir="$WWW/v2/${IMG_REPO[$key]}"
    mkdir -p "$dir/blobs" "$dir/manifests"
    while read -r digest; do ln "$(blob_file "$key" "$digest")" "$dir/blobs/$digest"; done < <(blobs_of "$key")
    ln "$(blob_file "$key" "${IMG_MANIFEST[$key]}")" "$dir/manifests/${IMG_TAG[$key]}"
    ln "$(blob_file "$key" "${IMG_MANIFEST[$key]}")" "$dir/manifests/${IMG_MANIFEST[$key]}"
done
NG="127.0.0.1:$(port)" NG_TLS="127.0.0.1:$(port)"
mkdir -p "$TMP/nginx-tmp"
cat >"$TMP/nginx.conf" <<EOF
daemon off;
user root;
worker_processes auto;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log $TMP/nginx-access.log;
    client_body_temp_path $TMP/nginx-tmp/body;
    proxy_temp_path $TMP/nginx-tmp/proxy;
    fastcgi_temp_path $TMP/nginx-tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx-tmp/uwsgi;
    scgi_temp_path $TMP/nginx-tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types { }
    default_type application/octet-stream;
    server {
        listen $NG;
        listen $NG_TLS ssl http2;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        root $WWW;
        location = /v2/ { default_type application/json; return 200 '{}'; }
        location ~ /manifests/ { default_type $OCI_MT; }
    }
}
EOF
spawn nginx "$TMP/nginx.out" nginx -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log"
NG_PID=$SPAWNED
await_http nginx "$NG_PID" "http://$NG/v2/"

# ------------------------------------------------------------ the two proxies
INSTANCES=0 # numbers each proxy's log: $TMP/NAME-N.log
# start_regmirror NAME DATA_DIR [TLS [ARGS...]]: sets RM (host:port) and RM_PID.
start_regmirror() {
    local name=$1 data=$2 tls=${3:-} args
    RM="127.0.0.1:$(port)"
    args=(serve --listen "$RM" --data-dir "$data" --upstream "http://$UP" "${@:4}")
    if [[ -n $tls ]]; then args+=(--tls-cert "$CERT" --tls-key "$KEY"); else args+=(--insecure-http); fi
    INSTANCES=$((INSTANCES + 1))
    spawn "$name" "$TMP/$name-$INSTANCES.log" env NO_COLOR=1 "$BIN" "${args[@]}"
    RM_PID=$SPAWNED
    if [[ -n $tls ]]; then
        await_http "$name" "$RM_PID" "https://$RM/v2/" --cacert "$CA"
    else
        await_http "$name" "$RM_PID" "http://$RM/v2/"
    fi
}
# start_distribution NAME STORAGE [TLS]: sets DI (host:port) and DI_PID.
start_distribution() {
    local name=$1 storage=$2 tls=${3:-}
    DI="127.0.0.1:$(port)"
    {
        printf 'version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\n' "$storage"
        printf 'http:\n  addr: %s\n' "$DI"
        [[ -z $tls ]] || printf '  tls:\n    certificate: %s\n    key: %s\n' "$CERT" "$KEY"
        printf 'proxy:\n  remoteurl: http://%s\n' "$UP"
    } >"$TMP/$name.yml"
    INSTANCES=$((INSTANCES + 1))
    spawn "$name" "$TMP/$name-$INSTANCES.log" docker-registry serve "$TMP/$name.yml"
    DI_PID=$SPAWNED
    if [[ -n $tls ]]; then
        await_http "$name" "$DI_PID" "https://$DI/v2/" --cacert "$CA"
    else
        await_http "$name" "$DI_PID" "http://$DI/v2/"
    fi
}
# start_fleet: three regmirror instances in one fleet (--fleet, plain HTTP), each with a data
# directory of its own and FLEET_EXTRA's arguments; sets FLEET_ADDRS and FLEET_PIDS.
FLEET_EXTRA=()
start_fleet() {
    local n members="" addr
    FLEET_ADDRS=() FLEET_PIDS=()
    for n in 0 1 2; do FLEET_ADDRS[n]="127.0.0.1:$(port)"; done
    for addr in "${FLEET_ADDRS[@]}"; do members+="${members:+,}http://$addr"; done
    openssl rand -hex 32 >"$TMP/fleet.key"
    for n in 0 1 2; do
        INSTANCES=$((INSTANCES + 1))
        spawn "fleet-$n" "$TMP/fleet-$n-$INSTANCES.log" env NO_COLOR=1 "$BIN" serve --insecure-http \
            --listen "${FLEET_ADDRS[n]}" --data-dir "$TMP/fleet-data-$n" --upstream "http://$UP" \
            --fleet "$members" --fleet-self "http://${FLEET_ADDRS[n]}" --fleet-key-file "$TMP/fleet.key" \
            "${FLEET_EXTRA[@]}"
        FLEET_PIDS[n]=$SPAWNED
        await_http "fleet-$n" "$SPAWNED" "http://${FLEET_ADDRS[n]}/v2/"
    done
}
stop_fleet() {
    local pid
    for pid in "${FLEET_PIDS[@]}"; do stop_named "$pid"; done
    rm -rf "$TMP"/fleet-data-*
}

# start_garage: a one-node Garage on 127.0.0.1 with a key; sets GARAGE_S3, GARAGE_PID.
GARAGE_KEY_ID=GK00112233445566778899aabb
start_garage() {
    local dir="$TMP/garage" id secret rpc
    secret=$(printf '%064d' 7)
    GARAGE_S3="127.0.0.1:$(port)" rpc="127.0.0.1:$(port)"
    mkdir -p "$dir"
    printf '%s\n' "metadata_dir = \"$dir/meta\"" "data_dir = \"$dir/data\"" 'db_engine = "sqlite"' \
        'replication_factor = 1' "rpc_bind_addr = \"$rpc\"" "rpc_public_addr = \"$rpc\"" \
        "rpc_secret = \"$secret\"" \
        '[s3_api]' 's3_region = "garage"' "api_bind_addr = \"$GARAGE_S3\"" \
        'root_domain = ".s3.garage.localhost"' >"$dir/garage.toml"
    spawn garage "$TMP/garage.log" env RUST_LOG=garage=warn "$GARAGE_BIN" -c "$dir/garage.toml" server
    GARAGE_PID=$SPAWNED
    for _ in $(seq 100); do id=$(garage_cmd node id -q 2>/dev/null) && break; sleep 0.2; done
    [[ -n $id ]] || die "garage did not start: $(tail -n 3 "$TMP/garage.log")"
    garage_cmd layout assign -z dc1 -c 10G "${id%%@*}" >/dev/null
    garage_cmd layout apply --version 1 >/dev/null
    garage_cmd key import --yes -n bench "$GARAGE_KEY_ID" "$secret" >/dev/null
    printf 'access_key_id = "%s"\nsecret_access_key = "%s"\n' "$GARAGE_KEY_ID" "$secret" >"$TMP/bucket.toml"
}
garage_cmd() { "$GARAGE_BIN" -c "$TMP/garage/garage.toml" "$@"; }
# await_object BUCKET KEY: wait (up to 5 minutes) until the bucket holds KEY.
await_object() {
    local secret
    secret=$(printf '%064d' 7)
    for _ in $(seq 1500); do
        curl -fsS -o /dev/null -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:garage:s3" --user "$GARAGE_KEY_ID:$secret" \
            -I "http://$GARAGE_S3/$1/$2" 2>/dev/null && return 0
        sleep 0.2
    done
    die "$2 never reached bucket $1"
}

# stop_named PID: stop, and forget it (so stop_all does not wait for it again).
stop_named() {
    local pid=$1 i
    stop "$pid"
    for i in "${!PIDS[@]}"; do [[ ${PIDS[i]} != "$pid" ]] || unset 'PIDS[i]'; done
    PIDS=("${PIDS[@]}")
}

# ------------------------------------------------------------------- pulling
mkdir -p "$TMP/home" "$TMP/skopeo-tmp"
printf 'unqualified-search-registries = []\n' >"$TMP/registries.conf"
SKOPEO=(env HOME="$TMP/home" TMPDIR="$TMP/skopeo-tmp" timeout 600 skopeo --insecure-policy
    --registries-conf "$TMP/registries.conf")
# skopeo_pull ADDR KEY DEST: copy the image by tag to dir:DEST (plain HTTP: skopeo tries
# TLS first and falls back, the same for every server).
skopeo_pull() {
    "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://$1/${IMG_REPO[$2]}:${IMG_TAG[$2]}" "dir:$3" \
        >>"$TMP/skopeo.log" 2>&1
}
addr_of() { # SERVER [N]: its plain-HTTP address (a fleet's: of its instance N mod 3)
    case $1 in
        direct) echo "$UP" ;; regmirror) echo "$RM" ;; distribution) echo "$DI" ;; nginx) echo "$NG" ;;
        fleet | fleetbucket) echo "${FLEET_ADDRS[$((${2:-0} % 3))]}" ;;
    esac
}
pid_of() { case $1 in regmirror) echo "$RM_PID" ;; distribution) echo "$DI_PID" ;; *) echo "" ;; esac; }

# timed_pull PHASE SERVER KEY: one pull, recorded as PHASE.KEY.SERVER (seconds); for the
# proxies also, for the 1 GiB image, their RSS before and peak RSS during the pull, and when
# cold the upstream blob bytes the pull caused (as a multiple of the image).
timed_pull() {
    local phase=$1 server=$2 key=$3 pid mark t0 t bytes n
    pid=$(pid_of "$server")
    mark=$(log_mark "$UP_LOG")
    if [[ -n $pid && $key == big ]]; then
        hwm_reset "$pid"
        record "rss.base.$phase.$server" "$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")" KiB
    fi
    t0=$(now)
    skopeo_pull "$(addr_of "$server")" "$key" "$TMP/pull" || die "$phase pull of $key from $server failed (see $TMP/skopeo.log)"
    t=$(since "$t0")
    rm -rf "$TMP/pull"
    record "$phase.$key.$server" "$t" s
    [[ -z $pid || $key != big ]] || record "rss.$phase.$server" "$(hwm "$pid")" KiB
    if [[ -n $pid && $phase == cold ]]; then
        read -r bytes n < <(upstream_blob_bytes "$UP_LOG" "$mark")
        record "upstream.$phase.$key.$server" "$(awk -v b="$bytes" -v i="${IMG_BLOB_BYTES[$key]}" 'BEGIN { printf "%.3f", b / i }')" x
    fi
}

# ----------------------------------------------------- 1 cold pulls (fresh caches)
say "1: cold pulls, $COLD_REPS rounds from empty caches"
for ((round = 1; round <= COLD_REPS; round++)); do
    rm -rf "$TMP"/rm-data "$TMP"/di-data
    start_regmirror regmirror "$TMP/rm-data"
    start_distribution distribution "$TMP/di-data"
    order=(direct regmirror distribution)
    ((round % 2)) || order=(distribution regmirror direct)
    for key in "${KEYS[@]}"; do
        for server in "${order[@]}"; do timed_pull cold "$server" "$key"; done
    done
    if ((round < COLD_REPS)); then stop_named "$RM_PID"; stop_named "$DI_PID"; fi
done

# ------------------------------------------------------------------ 2 warm pulls
say "2: warm pulls, best of $REPS"
for ((rep = 1; rep <= REPS; rep++)); do
    for key in "${KEYS[@]}"; do
        for server in direct regmirror distribution nginx; do timed_pull warm "$server" "$key"; done
    done
done

# -------------------------------------------------- 3 single-stream 1 GiB GETs
# TLS twins of the warm proxies, on the same data directory and storage.
saved=("$RM" "$RM_PID" "$DI" "$DI_PID")
start_regmirror regmirror-tls "$TMP/rm-data" tls
RM_TLS=$RM RM_TLS_PID=$RM_PID
start_distribution distribution-tls "$TMP/di-data" tls
DI_TLS=$DI DI_TLS_PID=$DI_PID
RM=${saved[0]} RM_PID=${saved[1]} DI=${saved[2]} DI_PID=${saved[3]}
BIG_SIZE=$(stat -c %s "$(blob_file big "$BIG_LAYER")")

# get_rate KEY URL PIDS [CURL ARGS]: one GET of the 1 GiB blob, recorded in MB/s (10^6 B/s),
# and the CPU time the server's processes PIDS (with their children) spent on it, in ms.
get_rate() {
    local key=$1 url=$2 out cpu0 p procs=()
    read -r -a procs <<<"$3"
    shift 3
    for p in "${procs[@]}"; do mapfile -t -O "${#procs[@]}" procs < <(pgrep -P "$p" || true); done
    cpu0=$(cpu_ms "${procs[@]}")
    out=$(curl -sS --max-time 300 -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' "$@" "$url") ||
        die "GET $url failed"
    read -r code size speed <<<"$out"
    [[ $code == 200 && $size == "$BIG_SIZE" ]] || die "GET $url: status $code, $size bytes (want 200, $BIG_SIZE)"
    record "$key" "$(awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1e6 }')" MB/s
    record "cpu.$key" "$(($(cpu_ms "${procs[@]}") - cpu0))" "ms CPU"
}
say "3: single-stream GET of the 1 GiB blob, best of $REPS"
BLOB_PATH="/v2/${IMG_REPO[big]}/blobs/$BIG_LAYER"
hwm_reset "$RM_PID"
hwm_reset "$RM_TLS_PID"
for ((rep = 1; rep <= REPS; rep++)); do
    get_rate get.http.direct "http://$UP$BLOB_PATH" "$UP_PID"
    get_rate get.http.regmirror "http://$RM$BLOB_PATH" "$RM_PID"
    get_rate get.http.distribution "http://$DI$BLOB_PATH" "$DI_PID"
    get_rate get.http.nginx "http://$NG$BLOB_PATH" "$NG_PID"
    get_rate get.tls.regmirror "https://$RM_TLS$BLOB_PATH" "$RM_TLS_PID" --cacert "$CA" --http1.1
    get_rate get.tls.distribution "https://$DI_TLS$BLOB_PATH" "$DI_TLS_PID" --cacert "$CA" --http1.1
    get_rate get.tls.nginx "https://$NG_TLS$BLOB_PATH" "$NG_PID" --cacert "$CA" --http1.1
    get_rate get.h2.regmirror "https://$RM_TLS$BLOB_PATH" "$RM_TLS_PID" --cacert "$CA" --http2
    get_rate get.h2.distribution "https://$DI_TLS$BLOB_PATH" "$DI_TLS_PID" --cacert "$CA" --http2
    get_rate get.h2.nginx "https://$NG_TLS$BLOB_PATH" "$NG_PID" --cacert "$CA" --http2
done
record rss.get.regmirror "$(hwm "$RM_PID")" KiB
record rss.gettls.regmirror "$(hwm "$RM_TLS_PID")" KiB
stop_named "$RM_TLS_PID"
stop_named "$DI_TLS_PID"

# ------------------------------------------------------------- 4 request rates
say "4: request rates (${SECS} s runs, best of $REPS)"
MANIFEST_PATH="/v2/${IMG_REPO[small]}/manifests/${IMG_TAG[small]}"
SMALL_PATH="/v2/${IMG_REPO[small]}/blobs/$SMALL_1MIB"
# wrk_rate KEY CONNECTIONS URL: requests/s of GETs; any non-2xx answer or socket error fails.
wrk_rate() {
    local out
    out=$(timeout $((SECS + 30)) wrk -t2 -c"$2" -d"${SECS}s" "$3" 2>&1) || die "wrk $3 failed: $out"
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then die "wrk $3: errors: $out"; fi
    record "$1" "$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")" req/s
}
# head_rate KEY URL: requests/s of HEADs with 64 connections (loadgen; errors fail).
head_rate() {
    local out
    out=$(timeout $((SECS + 30)) "$LOADGEN" -X HEAD -c 64 -d "$SECS" -H "$ACCEPT" "$2") || die "loadgen $2 failed: $out"
    [[ $out == *" errors=0 "* ]] || die "loadgen $2: errors: $out"
    record "$1" "$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$out")" req/s
}
for ((rep = 1; rep <= REPS; rep++)); do
    for server in regmirror distribution nginx; do
        addr=$(addr_of "$server")
        head_rate "head64.$server" "http://$addr$MANIFEST_PATH"
        wrk_rate "get1m64.$server" 64 "http://$addr$SMALL_PATH"
        wrk_rate "get1m16.$server" 16 "http://$addr$SMALL_PATH"
    done
done
stop_named "$RM_PID"
stop_named "$DI_PID"

# ----------------------------------------------------- 5 concurrent cold pulls
say "5: $CONC concurrent cold pulls of the medium image, $COLD_REPS rounds"
# concurrent SERVER: CONC pulls at once; wall time, failed pulls, the upstream's blob bytes.
concurrent() {
    local server=$1 mark t0 i pids=() bytes n failed=0
    mkdir -p "$TMP/conc"
    mark=$(log_mark "$UP_LOG")
    t0=$(now)
    for ((i = 0; i < CONC; i++)); do
        skopeo_pull "$(addr_of "$server" "$i")" medium "$TMP/conc/$i" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || failed=$((failed + 1)); done
    record "conc.wall.$server" "$(since "$t0")" s
    # Counted, not fatal: distribution's proxy answers some concurrent cold pulls with 500.
    record "conc.failed.$server" "$failed" pulls
    ((failed == 0)) || say "$failed of $CONC concurrent pulls from $server failed: $(grep level=fatal "$TMP/skopeo.log" | tail -n 1)"
    rm -rf "$TMP/conc"
    read -r bytes n < <(upstream_blob_bytes "$UP_LOG" "$mark")
    record "conc.upstream.$server" "$(awk -v b="$bytes" -v i="${IMG_BLOB_BYTES[medium]}" 'BEGIN { printf "%.3f", b / i }')" x
    record "conc.upstream_gets.$server" "$n" GETs
}
for ((round = 1; round <= COLD_REPS; round++)); do
    rm -rf "$TMP"/rm-data "$TMP"/di-data
    start_regmirror regmirror "$TMP/rm-data"
    start_distribution distribution "$TMP/di-data"
    concurrent direct
    concurrent regmirror
    concurrent distribution
    stop_named "$RM_PID"
    stop_named "$DI_PID"
    start_fleet
    concurrent fleet
    stop_fleet
done
rm -rf "$TMP"/rm-data "$TMP"/di-data
record conc.image_blobs "${IMG_BLOBS[medium]}" blobs

# ------------------------------------ 3, cold: one 1 GiB GET that fills an empty cache
say "3 (cold): single-stream GET of the 1 GiB blob into empty caches, $COLD_REPS rounds"
for ((round = 1; round <= COLD_REPS; round++)); do
    rm -rf "$TMP"/rm-data "$TMP"/di-data
    start_regmirror regmirror "$TMP/rm-data"
    start_distribution distribution "$TMP/di-data"
    get_rate get.cold.direct "http://$UP$BLOB_PATH" "$UP_PID"
    hwm_reset "$RM_PID"
    get_rate get.cold.regmirror "http://$RM$BLOB_PATH" "$RM_PID"
    record rss.getcold.regmirror "$(hwm "$RM_PID")" KiB
    get_rate get.cold.distribution "http://$DI$BLOB_PATH" "$DI_PID"
    stop_named "$RM_PID"
    stop_named "$DI_PID"
done

# ------------------------------------------------------- 8 on a Garage bucket
# One Garage node on loopback, a fresh bucket per round. Cold: a 1 GiB GET through an instance
# whose bucket lacks the blob (it fills from the upstream, then uploads), with its peak RSS
# through the upload; from the bucket: the same GET through an instance with an empty data
# directory on the now full bucket; pulls likewise; and 16 concurrent cold pulls over a fleet
# of three on one bucket, with the upstream's bytes.
GARAGE_BIN=${REGMIRROR_GARAGE:-$(command -v garage || true)}
if [[ -x $GARAGE_BIN ]]; then
    say "8: on a Garage bucket, $COLD_REPS rounds"
    start_garage
    for ((round = 1; round <= COLD_REPS; round++)); do
        garage_cmd bucket create "bench-$round" >/dev/null
        garage_cmd bucket allow --read --write "bench-$round" --key "$GARAGE_KEY_ID" >/dev/null
        BUCKET_ARGS=(--bucket "http://$GARAGE_S3/bench-$round" --bucket-region garage --bucket-credentials "$TMP/bucket.toml")
        rm -rf "$TMP"/rm-data
        start_regmirror regmirror "$TMP/rm-data" "" "${BUCKET_ARGS[@]}"
        hwm_reset "$RM_PID"
        get_rate get.cold.bucket "http://$RM$BLOB_PATH" "$RM_PID"
        await_object "bench-$round" "blobs/sha256/${BIG_LAYER#sha256:}"
        record rss.getcold.bucket "$(hwm "$RM_PID")" KiB
        timed_pull coldbucket regmirror medium
        stop_named "$RM_PID"
        rm -rf "$TMP"/rm-data
        start_regmirror regmirror "$TMP/rm-data" "" "${BUCKET_ARGS[@]}"
        hwm_reset "$RM_PID"
        get_rate get.frombucket.regmirror "http://$RM$BLOB_PATH" "$RM_PID"
        record rss.getfrombucket.regmirror "$(hwm "$RM_PID")" KiB
        timed_pull frombucket regmirror medium
        stop_named "$RM_PID"
        rm -rf "$TMP"/rm-data
        garage_cmd bucket create "bench-fleet-$round" >/dev/null
        garage_cmd bucket allow --read --write "bench-fleet-$round" --key "$GARAGE_KEY_ID" >/dev/null
        FLEET_EXTRA=(--bucket "http://$GARAGE_S3/bench-fleet-$round" --bucket-region garage --bucket-credentials "$TMP/bucket.toml")
        start_fleet
        concurrent fleetbucket
        stop_fleet
        FLEET_EXTRA=()
    done
    stop_named "$GARAGE_PID"
else
    say "8: skipped (no garage binary: cargo install garage --locked, or set REGMIRROR_GARAGE)"
fi

# ------------------------------------------------------ profiles (perf, when it works)
# profile NAME CMD...: perf record of regmirror (RM_PID) while CMD runs; the top symbols
# by own time go to $TMP/perf-NAME.txt.
PROFILES=""
profile() {
    local name=$1 perf_pid
    shift
    spawn perf "$TMP/perf-$name.err" perf record -q -F 999 -g -o "$TMP/perf-$name.data" -p "$RM_PID"
    perf_pid=$SPAWNED
    sleep 1 # perf attaches
    "$@" >"$TMP/perf-$name.out" 2>&1 || die "profiled command failed: $* ($(tail -n 3 "$TMP/perf-$name.out"))"
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    stop_named "$perf_pid"
    perf report -i "$TMP/perf-$name.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' | sed -E -n '1,15{s/ +- +- *$//; s/ +$//; p}' >"$TMP/perf-$name.txt"
    PROFILES+="$name=$TMP/perf-$name.txt "
}
if [[ ${BENCH_PERF:-1} != 0 ]] && command -v perf >/dev/null &&
    perf record -q -o "$TMP/perf-test.data" true >/dev/null 2>&1; then
    say "profiles: perf record of regmirror during 1 GiB GETs (cold, warm, TLS h2) and 16-connection 1 MiB GETs"
    rm -rf "$TMP"/rm-data
    start_regmirror regmirror "$TMP/rm-data"
    GET=(curl -fsS -o /dev/null --max-time 300)
    profile 1-cold-get "${GET[@]}" "http://$RM$BLOB_PATH"
    profile 2-warm-get "${GET[@]}" "http://$RM$BLOB_PATH"
    "${GET[@]}" "http://$RM$SMALL_PATH" # cached first
    profile 3-get-1MiB-16-connections timeout $((SECS + 30)) wrk -t2 -c16 -d"${SECS}s" "http://$RM$SMALL_PATH"
    saved=("$RM" "$RM_PID")
    start_regmirror regmirror-tls "$TMP/rm-data" tls
    profile 4-warm-get-tls-h2 "${GET[@]}" --cacert "$CA" --http2 "https://$RM$BLOB_PATH"
    stop_named "$RM_PID"
    stop_named "${saved[1]}"
    rm -rf "$TMP"/rm-data
else
    say "profiles: skipped (BENCH_PERF=0, or perf missing or not permitted)"
fi

# ------------------------------------------------------ 7 restart with 100k blobs
say "7: restart with $RESTART_BLOBS cached blobs"
python3 "$BENCH/mkimages.py" blobs "$TMP/many" "$RESTART_BLOBS"
for ((rep = 1; rep <= REPS; rep++)); do
    p=$(port)
    out=$(python3 "$BENCH/ready.py" 127.0.0.1 "$p" /v2/ "$TMP/restart.log" -- \
        env NO_COLOR=1 "$BIN" serve --insecure-http --listen "127.0.0.1:$p" --data-dir "$TMP/many" --upstream "http://$UP") ||
        die "restart timing failed: $(tail -n 3 "$TMP/restart.log")"
    grep -q "cached=$RESTART_BLOBS " "$TMP/restart.log" || die "the index did not load $RESTART_BLOBS blobs: $(grep ready "$TMP/restart.log")"
    record ready.tcp_ms "$(sed -E 's/.*tcp_ms=([0-9.]+).*/\1/' <<<"$out")" ms
    record ready.http_ms "$(sed -E 's/.*http_ms=([0-9.]+).*/\1/' <<<"$out")" ms
    record ready.index_ms "$(grep -o 'index_ms=[0-9]*' "$TMP/restart.log" | cut -d= -f2)" ms
done

# ---------------------------------------------------------------------- report
stop_all
say "all servers stopped; writing the report"
python3 - "$TMP/meta.json" <<EOF
import json, subprocess, sys
def sh(c):
    return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
meta = {
    "date": sh("date -u '+%Y-%m-%d %H:%M UTC'"),
    "nproc": sh("nproc"),
    "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
    "free": sh("free -h"),
    "kernel": sh("uname -sr"),
    "regmirror": "$REV",
    "distribution": sh("docker-registry --version"),
    "nginx": sh("nginx -v 2>&1"),
    "skopeo": sh("skopeo --version"),
    "curl": sh("curl --version | head -n1"),
    "wrk": sh("wrk -v 2>&1 | head -n1"),
    "rustc": sh("rustc --version"),
    "loadavg_end": sh("cat /proc/loadavg"),
    "loadavg_start": "$LOAD_START",
    "reps": "$REPS", "cold_reps": "$COLD_REPS", "seconds": "$SECS",
    "duration_s": round(float("$EPOCHREALTIME") - float("$STARTED")),
    "profiles": dict(p.split("=", 1) for p in "$PROFILES".split()),
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
python3 "$BENCH/report.py" "$RESULTS" "$TMP/meta.json" "$OUT_MD"
say "wrote $OUT_MD"
