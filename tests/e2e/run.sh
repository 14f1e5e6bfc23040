#!/usr/bin/env bash
# End-to-end test of regmirror with a real client (skopeo).
#
# Debian's docker-registry (the reference registry, distribution 2.8) stands in
# for Docker Hub on 127.0.0.1. Test images from tests/e2e/mkimages.py are
# pushed to it, then pulled through regmirror over TLS with a private CA:
# cold (upstream up), then warm by digest with the upstream stopped. Manifest
# and blob digests must be byte-identical to the upstream's. A few HTTP facts
# are checked with curl.
#
# Needs, and installs with apt-get when missing (as root; `apt-get update` runs
# once, only if something is missing):
#   skopeo, docker-registry, openssl, python3, curl, iproute2 (ip),
#   util-linux (unshare), coreutils (timeout, sha256sum).
# When root and unshare is permitted, it re-runs itself in a fresh network and
# mount namespace with only `lo` up, so nothing leaves the machine and ports
# can't clash; otherwise it runs as is (everything still on 127.0.0.1).
#
# Usage: tests/e2e/run.sh            (after `cargo build`)
# Env:   REGMIRROR_BIN  mirror binary (default: <repo>/target/debug/regmirror)
#        E2E_KEEP=1     keep the temp dir (logs, data) afterwards
#        RUST_LOG       passed to regmirror (default: info)
# Output ends with `e2e: N passed, M failed`; exit status non-zero on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/e2e"
SELF=$(readlink -f "${BASH_SOURCE[0]}")

step() { printf '\n== e2e: %s\n' "$*"; }
info() { printf 'e2e: %s\n' "$*"; }
die() { printf 'e2e: FATAL: %s\n' "$*" >&2; exit 1; }

# Resolve the binary before a re-exec so a relative path keeps its meaning.
REGMIRROR_BIN=${REGMIRROR_BIN:-$ROOT/target/debug/regmirror}
[[ $REGMIRROR_BIN == /* ]] || REGMIRROR_BIN="$ROOT/$REGMIRROR_BIN"
[[ -x $REGMIRROR_BIN ]] || die "no regmirror binary at $REGMIRROR_BIN (run cargo build, or set REGMIRROR_BIN)"
export REGMIRROR_BIN

# ---------------------------------------------------------------- prerequisites
if [[ -z "${REGMIRROR_E2E_INNER:-}" ]]; then
    step "prerequisites"
    declare -A PKG_OF=(
        [skopeo]=skopeo [docker-registry]=docker-registry [openssl]=openssl
        [python3]=python3 [curl]=curl [ip]=iproute2 [unshare]=util-linux
        [timeout]=coreutils [sha256sum]=coreutils
    )
    missing=()
    for cmd in "${!PKG_OF[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG_OF[$cmd]}")
    done
    if ((${#missing[@]})); then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}) and not root to install them"
        info "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    info "skopeo: $(skopeo --version)"
    info "docker-registry: $(docker-registry --version 2>&1 | head -n1)"

    # ------------------------------------------------------- network namespace
    if [[ $(id -u) -eq 0 ]] && unshare --net --mount true 2>/dev/null; then
        info "re-running inside a fresh network namespace (unshare --net --mount)"
        REGMIRROR_E2E_INNER=netns exec unshare --net --mount -- bash "$SELF" "$@"
    fi
    info "not root, or unshare --net not permitted here: running in the current network namespace"
    export REGMIRROR_E2E_INNER=plain
fi

if [[ $REGMIRROR_E2E_INNER == netns ]]; then
    ip link set lo up
    info "network namespace: only lo ($(ip -brief addr show lo | tr -s ' '))"
fi

# ------------------------------------------------------------------ bookkeeping
TMP=$(mktemp -d "${TMPDIR:-/tmp}/regmirror-e2e.XXXXXX")
PIDS=()
PASSED=0
FAILED=0
FAILURES=()
UPSTREAM_PID=""
MIRROR_PID=""
FINISHED=""

show_logs() {
    local f
    for f in "$TMP/mirror.log" "$TMP/registry.log"; do
        [[ -f $f ]] || continue
        printf '\n---- tail of %s ----\n' "$f"
        tail -n 40 "$f"
    done
}

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        info "pid $pid ignored TERM for 5 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if ((rc != 0 || FAILED != 0)); then show_logs; fi
    if [[ -n ${E2E_KEEP:-} ]] || ((rc != 0 || FAILED != 0)); then
        info "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    if [[ -z $FINISHED ]]; then
        info "aborted (exit status $rc)"
        FAILED=$((FAILED + 1))
    fi
    # The closing line, last in the output whatever happened.
    printf 'e2e: %d passed, %d failed\n' "$PASSED" "$FAILED"
    if ((rc == 0 && FAILED != 0)); then rc=1; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
fail() {
    FAILED=$((FAILED + 1)); FAILURES+=("$1")
    printf 'FAIL %s\n' "$1"
    [[ -z ${2:-} ]] || printf '     %s\n' "$2"
}
# check NAME CMD...: run CMD (output to check.out, shown on failure), count it.
check() {
    local name=$1; shift
    if "$@" >"$TMP/check.out" 2>&1; then
        pass "$name"
    else
        fail "$name" "command: $*"
        sed 's/^/     | /' "$TMP/check.out" | tail -n 20
    fi
}
# expect_eq NAME GOT WANT
expect_eq() {
    if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http NAME PID URL [CURL ARGS...]: up to 50 tries x 0.1 s (+ 2 s per try).
wait_http() {
    local name=$1 pid=$2 url=$3 i; shift 3
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup"
        if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then
            info "$name answers $url"
            return 0
        fi
        sleep 0.1
    done
    die "$name did not answer $url within 50 tries"
}

SKOPEO=(timeout 120 skopeo --insecure-policy)
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# ----------------------------------------------------------------- test images
step "generate test images"
python3 "$HERE/mkimages.py" "$TMP/images" >/dev/null
SUMMARY="$TMP/images/summary.json"
# One line per image: key name repo tag format mediaType manifest
mapfile -t IMAGES < <(python3 - "$SUMMARY" <<'EOF'
import json, os, sys
for i in json.load(open(sys.argv[1]))["images"]:
    print(os.path.basename(i["layout"]), i["name"], i["repo"], i["tag"], i["format"],
          i["mediaType"], i["manifest"])
EOF
)
# summary_field KEY FIELD: space-separated values of a list or scalar field.
summary_field() {
    python3 - "$SUMMARY" "$1" "$2" <<'EOF'
import json, os, sys
for i in json.load(open(sys.argv[1]))["images"]:
    if os.path.basename(i["layout"]) == sys.argv[2]:
        v = i[sys.argv[3]]
        if sys.argv[3] == "children":
            v = [c["manifest"] for c in v]
        print(" ".join(v) if isinstance(v, list) else v)
EOF
}
for line in "${IMAGES[@]}"; do info "image: $line"; done

# ------------------------------------------------------------ upstream registry
step "start docker-registry (stand-in for Docker Hub)"
UP_PORT=$(free_port)
UP="127.0.0.1:$UP_PORT"
mkdir -p "$TMP/registry-data"
cat >"$TMP/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $TMP/registry-data
  delete:
    enabled: false
http:
  addr: $UP
EOF
docker-registry serve "$TMP/registry.yml" >"$TMP/registry.log" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
wait_http docker-registry "$UPSTREAM_PID" "http://$UP/v2/"

step "push test images to the upstream"
for line in "${IMAGES[@]}"; do
    read -r key name repo tag format _ digest <<<"$line"
    args=()
    case $format in
        v2s2) args=(--format v2s2) ;;
        oci-index) args=(--all) ;;
    esac
    "${SKOPEO[@]}" copy -q --dest-tls-verify=false "${args[@]}" \
        "oci:$TMP/images/$key:$tag" "docker://$UP/$repo:$tag" \
        || die "skopeo push of $key to $UP/$repo:$tag failed"
    "${SKOPEO[@]}" inspect --tls-verify=false --raw "docker://$UP/$repo:$tag" >"$TMP/up-$key.manifest"
    expect_eq "upstream $repo:$tag has the expected $format manifest digest" \
        "sha256:$(sha256_of "$TMP/up-$key.manifest")" "$digest"
done

# --------------------------------------------------------------------- TLS PKI
step "create a private CA and a server certificate (127.0.0.1, localhost, ::1)"
PKI="$TMP/pki"
CERTDIR="$TMP/certs" # skopeo --cert-dir: every *.crt in it is a trusted CA
mkdir -p "$PKI" "$CERTDIR"
(
    cd "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.crt -days 2 -subj "/CN=regmirror e2e CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout server.key -out server.csr -subj "/CN=localhost"
    cat >server.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:::1
EOF
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out server.crt -days 2 -extfile server.ext
) >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log"; die "openssl failed"; }
cp "$PKI/ca.crt" "$CERTDIR/ca.crt"
CACERT="$PKI/ca.crt"
check "server certificate verifies against the CA" openssl verify -CAfile "$CACERT" "$PKI/server.crt"

# -------------------------------------------------------------------- regmirror
step "start regmirror with TLS in front of http://$UP"
M_PORT=$(free_port)
M="127.0.0.1:$M_PORT"
mkdir -p "$TMP/mirror-data"
info "binary: $REGMIRROR_BIN"
NO_COLOR=1 RUST_LOG=${RUST_LOG:-info} "$REGMIRROR_BIN" serve --listen "$M" --data-dir "$TMP/mirror-data" \
    --upstream "http://$UP" --tls-cert "$PKI/server.crt" --tls-key "$PKI/server.key" \
    >"$TMP/mirror.log" 2>&1 &
MIRROR_PID=$!
PIDS+=("$MIRROR_PID")
wait_http regmirror "$MIRROR_PID" "https://$M/v2/" --cacert "$CACERT"

CURL=(curl -sS --max-time 20 --cacert "$CACERT")
code=$("${CURL[@]}" -o "$TMP/v2.body" -w '%{http_code}' "https://$M/v2/" || true)
expect_eq "GET /v2/ is 200" "$code" "200"
check "GET /v2/ over TLS verifies as localhost too" \
    "${CURL[@]}" -f --resolve "localhost:$M_PORT:127.0.0.1" -o /dev/null "https://localhost:$M_PORT/v2/"

# verify_dir KEY DIR WHAT: a skopeo dir: copy matches the summary byte for byte.
verify_dir() {
    local key=$1 dir=$2 what=$3 want f absent="" extra="" bad=""
    expect_eq "$what: manifest digest" "sha256:$(sha256_of "$dir/manifest.json")" \
        "$(summary_field "$key" manifest)"
    # Children of an index are stored as <hex>.manifest.json.
    for want in $(summary_field "$key" children); do
        f="$dir/${want#sha256:}.manifest.json"
        if [[ ! -f $f ]]; then absent+=" $want"
        elif [[ "sha256:$(sha256_of "$f")" != "$want" ]]; then bad+=" $want"; fi
    done
    for want in $(summary_field "$key" blobs); do
        f="$dir/${want#sha256:}"
        if [[ ! -f $f ]]; then absent+=" $want"
        elif [[ "sha256:$(sha256_of "$f")" != "$want" ]]; then bad+=" $want"; fi
    done
    local all_expected
    all_expected=" $(summary_field "$key" blobs) "
    for f in "$dir"/*; do
        f=$(basename "$f")
        [[ $f =~ ^[0-9a-f]{64}$ ]] || continue
        [[ $all_expected == *" sha256:$f "* ]] || extra+=" sha256:$f"
    done
    if [[ -z $absent$extra$bad ]]; then
        pass "$what: all child manifests and blobs byte-identical"
    else
        fail "$what: blobs differ" "missing:${absent:- none} extra:${extra:- none} bad digest:${bad:- none}"
    fi
}

# compare_raw WHAT MIRROR_REF UPSTREAM_REF [WANT_DIGEST]: `skopeo inspect --raw`
# through the mirror equals the upstream's (or WANT_DIGEST when UPSTREAM_REF is "").
compare_raw() {
    local what=$1 mref=$2 uref=$3 out
    out="$TMP/raw.$RANDOM"
    if ! "${SKOPEO[@]}" inspect --cert-dir "$CERTDIR" --raw "docker://$mref" >"$out.m" 2>"$out.err"; then
        fail "$what" "skopeo inspect --raw docker://$mref failed: $(tail -n 3 "$out.err")"
        return
    fi
    if [[ -n $uref ]]; then
        "${SKOPEO[@]}" inspect --tls-verify=false --raw "docker://$uref" >"$out.u" 2>>"$out.err" || true
        expect_eq "$what" "$(sha256_of "$out.m")" "$(sha256_of "$out.u")"
    else
        expect_eq "$what" "sha256:$(sha256_of "$out.m")" "$4"
    fi
}

# ------------------------------------------------------------------- cold pull
step "cold pulls through the mirror (upstream up)"
mkdir -p "$TMP/cold" "$TMP/warm"
for line in "${IMAGES[@]}"; do
    read -r key name repo tag format _ digest <<<"$line"
    ref="$M/$name:$tag" # Docker Hub-style name: tiny -> library/tiny
    compare_raw "cold: inspect --raw $name:$tag equals upstream $repo:$tag" "$ref" "$UP/$repo:$tag"
    for child in $(summary_field "$key" children); do
        compare_raw "cold: inspect --raw $name@${child:0:19}… equals upstream" \
            "$M/$name@$child" "$UP/$repo@$child"
    done
    if "${SKOPEO[@]}" copy -q --src-cert-dir "$CERTDIR" --all \
        "docker://$ref" "dir:$TMP/cold/$key" >"$TMP/copy.err" 2>&1; then
        pass "cold: skopeo copy docker://$ref"
        verify_dir "$key" "$TMP/cold/$key" "cold $name:$tag"
    else
        fail "cold: skopeo copy docker://$ref" "$(tail -n 5 "$TMP/copy.err")"
    fi
done

step "HTTP facts (curl, upstream up)"
read -r key name repo tag format mt digest <<<"${IMAGES[0]}"
ACCEPT_ALL="application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
size=$(stat -c %s "$TMP/up-$key.manifest")
# head_check WHAT URL WANT_DIGEST WANT_LENGTH [WANT_CONTENT_TYPE]
head_check() {
    local what=$1 url=$2 want_digest=$3 want_len=$4 want_ct=${5:-} hdr code len dcd ct
    hdr="$TMP/head.$RANDOM"
    code=$("${CURL[@]}" -I -H "Accept: $ACCEPT_ALL" -o "$hdr" -w '%{http_code}' "$url" || true)
    len=$(grep -i '^content-length:' "$hdr" | tail -n1 | cut -d: -f2 | tr -d ' \r' || true)
    dcd=$(grep -i '^docker-content-digest:' "$hdr" | tail -n1 | cut -d: -f2- | tr -d ' \r' || true)
    ct=$(grep -i '^content-type:' "$hdr" | tail -n1 | cut -d: -f2- | tr -d ' \r' || true)
    if [[ $code == 200 && -n $len && $len != 0 && $len == "$want_len" && $dcd == "$want_digest" \
        && (-z $want_ct || $ct == "$want_ct") ]]; then
        pass "$what: 200, Content-Length $len, Docker-Content-Digest${want_ct:+, Content-Type}"
    else
        fail "$what" "status $code, Content-Length '${len}' (want $want_len), Docker-Content-Digest '${dcd}' (want $want_digest)${want_ct:+, Content-Type \"$ct\" (want $want_ct)}"
        sed 's/^/     | /' "$hdr"
    fi
}
head_check "HEAD /v2/$name/manifests/$tag" "https://$M/v2/$name/manifests/$tag" "$digest" "$size" "$mt"
head_check "HEAD /v2/library/$name/manifests/$tag" "https://$M/v2/library/$name/manifests/$tag" "$digest" "$size" "$mt"
first_layer=$(summary_field "$key" blobs | cut -d' ' -f2)
layer_size=$(stat -c %s "$TMP/images/$key/blobs/sha256/${first_layer#sha256:}")
head_check "HEAD /v2/$name/blobs/<layer>" "https://$M/v2/$name/blobs/$first_layer" "$first_layer" "$layer_size"
code=$("${CURL[@]}" -o "$TMP/blob.mirror" -w '%{http_code}' "https://$M/v2/$name/blobs/$first_layer" || true)
curl -sS --max-time 20 -o "$TMP/blob.up" "http://$UP/v2/$repo/blobs/$first_layer" || true
check "GET blob through the mirror is byte-identical to upstream (status $code)" cmp "$TMP/blob.mirror" "$TMP/blob.up"
code=$("${CURL[@]}" -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$TMP/up-$key.manifest" -o "$TMP/put.body" -w '%{http_code}' \
    "https://$M/v2/$name/manifests/e2e-push" || true)
if [[ $code == 405 ]] && grep -q UNSUPPORTED "$TMP/put.body"; then
    pass "PUT manifest: 405 with UNSUPPORTED"
else
    fail "PUT manifest: 405 with UNSUPPORTED" "status $code, body: $(head -c 300 "$TMP/put.body")"
fi

# -------------------------------------------------------------- upstream stops
step "stop the upstream registry (pid $UPSTREAM_PID)"
stop_pid "$UPSTREAM_PID"
if curl -sS --max-time 2 -o /dev/null "http://$UP/v2/" 2>/dev/null; then
    die "upstream still answers after stop"
fi
info "upstream is down"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "https://$M/v2/" || true)
expect_eq "GET /v2/ is 200 with the upstream down" "$code" "200"

step "warm pulls by digest (served from the cache)"
for line in "${IMAGES[@]}"; do
    read -r key name repo tag format _ digest <<<"$line"
    ref="$M/$name@$digest"
    compare_raw "warm: inspect --raw $name@${digest:0:19}…" "$ref" "" "$digest"
    if "${SKOPEO[@]}" copy -q --src-cert-dir "$CERTDIR" --all \
        "docker://$ref" "dir:$TMP/warm/$key" >"$TMP/copy.err" 2>&1; then
        pass "warm: skopeo copy docker://$M/$name@${digest:0:19}…"
        verify_dir "$key" "$TMP/warm/$key" "warm $name@digest"
    else
        fail "warm: skopeo copy docker://$ref" "$(tail -n 5 "$TMP/copy.err")"
    fi
done

# Not counted: the brief only requires by-digest pulls to work warm. A tag with
# the upstream down is served stale by mirrors that follow protocol.md §9
# (stale-if-error with a Warning header); report what happened.
read -r key name repo tag format _ digest <<<"${IMAGES[0]}"
code=$("${CURL[@]}" -o /dev/null -D "$TMP/stale.hdr" -w '%{http_code}' \
    -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
    "https://$M/v2/$name/manifests/$tag" || true)
info "note (not counted): GET /v2/$name/manifests/$tag with the upstream down -> $code$(
    grep -i '^warning:' "$TMP/stale.hdr" | tr -d '\r' | sed 's/^/, /' || true)"

step "HTTP facts (curl, upstream down)"
read -r key name repo tag format mt digest <<<"${IMAGES[0]}"
head_check "warm HEAD /v2/$name/manifests/<digest>" "https://$M/v2/$name/manifests/$digest" "$digest" "$size" "$mt"
head_check "warm HEAD /v2/$name/blobs/<layer>" "https://$M/v2/$name/blobs/$first_layer" "$first_layer" "$layer_size"

# ---------------------------------------------------------------------- result
step "result"
if ((FAILED)); then
    for f in "${FAILURES[@]}"; do info "failed: $f"; done
fi
FINISHED=1 # cleanup (trap EXIT) prints the count and sets the exit status
