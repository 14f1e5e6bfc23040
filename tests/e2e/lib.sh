# Shared helpers for tests/e2e/run.sh and tests/e2e/stages/*.sh (sourced, not run).
#
# Globals they rely on: TMP (the run's temp dir, set by run.sh), SUMMARY (mkimages.py's
# summary.json, set by stages/upstream.sh), MIRROR_LOG (regmirror's stderr, set by
# stages/mirror.sh).

step() { printf '\n== e2e: %s\n' "$*"; }
info() { printf 'e2e: %s\n' "$*"; }
die() { printf 'e2e: FATAL: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------- counting
PASSED=0
FAILED=0
FAILURES=()
NOTES=()

pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
fail() {
    FAILED=$((FAILED + 1)); FAILURES+=("$1")
    printf 'FAIL %s\n' "$1"
    [[ -z ${2:-} ]] || printf '     %s\n' "$2"
}
# note TEXT: an observation that is reported but not counted.
note() { NOTES+=("$1"); info "note (not counted): $1"; }
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
# setup_ok WHAT CMD...: a step that prepares a check rather than checking regmirror; not
# counted when it works, a failure when it does not (output shown).
setup_ok() {
    local what=$1; shift
    if "$@" >"$TMP/setup.out" 2>&1; then
        info "setup: $what"
        return 0
    fi
    fail "setup: $what" "command: $*"
    sed 's/^/     | /' "$TMP/setup.out" | tail -n 20
    return 1
}
# not CMD...: succeeds when CMD fails.
not() { ! "$@"; }
# expect_eq NAME GOT WANT
expect_eq() {
    if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
}
# run_logged LOG CMD...: run CMD with its output in LOG; on failure show LOG's tail.
run_logged() {
    local log=$1; shift
    if "$@" >"$log" 2>&1; then return 0; fi
    printf '     command: %s\n' "$*"
    sed 's/^/     | /' "$log" | tail -n 15
    return 1
}

# ------------------------------------------------------------------ processes
PIDS=()              # every background process started, in start order
declare -A PID_NAME=() # pid -> name

# start_bg NAME LOG CMD...: start CMD in the background, output to LOG; sets BG_PID.
start_bg() {
    local name=$1 log=$2; shift 2
    "$@" >"$log" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
    PID_NAME[$BG_PID]=$name
    info "started $name (pid $BG_PID): $*"
}

# stop_pid PID [SECONDS]: TERM, wait up to SECONDS (default 10), then KILL.
stop_pid() {
    local pid=$1 secs=${2:-10} i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        info "${PID_NAME[$pid]:-pid} $pid ignored TERM for $secs s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# wait_until NAME PID TRIES CMD...: retry CMD (each try capped at 5 s) every 0.2 s,
# at most TRIES times, while PID lives. Returns 1 if PID exits or TRIES run out.
wait_until() {
    local name=$1 pid=$2 tries=$3 i; shift 3
    for ((i = 0; i < tries; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            info "$name (pid $pid) exited during startup"
            return 1
        fi
        if timeout 5 "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    info "$name not ready after $tries tries: $*"
    return 1
}

# wait_http NAME PID URL [CURL ARGS...]: wait_until curl -f URL answers (50 tries).
wait_http() {
    local name=$1 pid=$2 url=$3; shift 3
    wait_until "$name" "$pid" 50 curl -fsS -o /dev/null --max-time 2 "$@" "$url" \
        || die "$name did not answer $url"
    info "$name answers $url"
}

# free_port ADDR: a TCP port free on ADDR (127.0.0.1 or ::1).
free_port() {
    python3 - "$1" <<'EOF'
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family)
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])
EOF
}

# ------------------------------------------------------- private mount namespace
# private_dir DIR [copy]: bind-mount an empty directory (or, with "copy", a copy of
# DIR's contents) over DIR, inside this script's own mount namespace only. DIR must
# exist (its package creates it).
private_dir() {
    local dir=$1 mode=${2:-} backing
    [[ -d $dir ]] || die "$dir does not exist (it is created by its package); cannot mount over it"
    backing="$TMP/etc/$(echo "${dir#/}" | tr / _)"
    mkdir -p "$backing"
    if [[ $mode == copy ]]; then cp -a "$dir/." "$backing/"; fi
    mount --bind "$backing" "$dir" || die "mount --bind $backing $dir failed"
}
# private_file FILE CONTENT: bind-mount a private file with CONTENT over FILE.
private_file() {
    local file=$1 backing
    backing="$TMP/etc/$(echo "${file#/}" | tr / _)"
    mkdir -p "$TMP/etc"
    printf '%s\n' "$2" >"$backing"
    mount --bind "$backing" "$file" || die "mount --bind $backing $file failed"
}
# umount_under DIR: unmount whatever the daemons left mounted below DIR (deepest first).
umount_under() {
    local m
    findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

# -------------------------------------------------------------- test images
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# summary_field KEY FIELD: space-separated values of a list or scalar field of image KEY
# (children: the child manifest digests).
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

# platform_image KEY ARCH: "MANIFEST CONFIG LAYER..." of the image a client on ARCH
# ends up with: the image itself, or an index's child for ARCH.
platform_image() {
    python3 - "$SUMMARY" "$1" "$2" <<'EOF'
import json, os, sys
for i in json.load(open(sys.argv[1]))["images"]:
    if os.path.basename(i["layout"]) != sys.argv[2]:
        continue
    if not i["children"]:
        print(i["manifest"], " ".join(i["blobs"]))
    for c in i["children"]:
        if c["platform"]["architecture"] == sys.argv[3]:
            print(c["manifest"], c["config"], " ".join(c["layers"]))
EOF
}

# --------------------------------------------------------------- mirror log
# The request log: one line per request, e.g.
#   INFO regmirror::server: request method=GET path=/v2/library/tiny/manifests/1?ns=docker.io
#        status=200 bytes=527 cache="miss" ms=3
log_mark() { wc -l <"$MIRROR_LOG"; }
# log_since MARK: the request lines logged after MARK.
# The mirror writes its log lines out at most 10 ms after they happen: wait that out first.
log_since() {
    sleep 0.05
    tail -n +"$(($1 + 1))" "$MIRROR_LOG" | grep -E ' request method=' || true
}

# mirror_served WHAT MARK REPO ITEM...: passes when, after MARK, the mirror answered a
# GET with 200/206 for every ITEM, a path below /v2/REPO/ as an extended regex:
# `manifests/(1|sha256:…)`, `blobs/sha256:…`. Options as variables:
#   MS_NS=docker.io   each of those requests also carried ?ns=docker.io
#   MS_CACHE=hit      each of those requests was answered from the cache
mirror_served() {
    local what=$1 mark=$2 repo=$3 lines item missing="" want n
    shift 3
    lines=$(log_since "$mark" | grep -E ' method=GET ' | grep -E ' status=20[06] ' || true)
    [[ -z ${MS_NS:-} ]] || lines=$(grep -E "[?&]ns=${MS_NS//./\\.}([& ]|$)" <<<"$lines" || true)
    [[ -z ${MS_CACHE:-} ]] || lines=$(grep -E " cache=\"?${MS_CACHE}\"?( |$)" <<<"$lines" || true)
    for item in "$@"; do
        grep -qE "path=/v2/$repo/${item}[? ]" <<<"$lines" || missing+=" ${item:0:30}…"
    done
    want="$# manifest/blob GETs answered 200${MS_NS:+, with ?ns=$MS_NS}${MS_CACHE:+, cache=$MS_CACHE}"
    n=$(log_since "$mark" | grep -c "path=/v2/$repo/" || true)
    if [[ -z $missing ]]; then
        pass "$what: mirror log shows it ($want; $n requests)"
    else
        fail "$what: mirror log lacks requests ($want)" "missing:$missing"
        log_since "$mark" | sed 's/^.*request /     | /' | tail -n 20
    fi
}

# pull_items KEY REF: mirror_served ITEMs for a pull of image KEY by REF (its tag or
# digest) on this host: the manifest, an index's child for HOST_ARCH, config, layers.
pull_items() {
    local img d
    read -r -a img <<<"$(platform_image "$1" "$HOST_ARCH")" # manifest config layers...
    printf '%s\n' "manifests/$2"
    [[ ${img[0]} == "$(summary_field "$1" manifest)" ]] || printf '%s\n' "manifests/${img[0]}"
    for d in "${img[@]:1}"; do printf '%s\n' "blobs/$d"; done
}

# ------------------------------------------------------------ client pulls
# client_pull CLIENT PHASE KEY: pull image KEY with CLIENT, by tag when PHASE is cold,
# by digest when it is warm (after removing the image locally, so the pull happens);
# check the image the client stored, and that the mirror served its manifests and
# blobs (from the cache when warm). CLIENT supplies the functions
#   CLIENT_name NAME REPO   the name the client pulls (tiny or docker.io/library/tiny)
#   CLIENT_pull REF, CLIENT_rm REF
#   CLIENT_id REF           prints what identifies the stored image (fails if absent)
#   CLIENT_want KEY         prints what CLIENT_id should print
# and SENDS_NS[CLIENT], the ?ns= it sends, if any; KEEPS_MANIFESTS[CLIENT] set when the
# client keeps manifests it has seen after removing the image (then a warm pull by
# digest need not ask the mirror for the top manifest; blobs it must still fetch).
declare -A SENDS_NS=()
declare -A KEEPS_MANIFESTS=()
HOST_ARCH=$(case $(uname -m) in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac)

client_pull() {
    local client=$1 phase=$2 key=$3 name repo tag digest base ref what mark up_mark items blobs
    read -r _ name repo tag _ _ digest <<<"$(image_line "$key")"
    base=$("${client}_name" "$name" "$repo")
    if [[ $phase == cold ]]; then
        ref="$base:$tag"
        mapfile -t items < <(pull_items "$key" "($tag|$digest)")
    else
        ref="$base@$digest"
        mapfile -t items < <(pull_items "$key" "$digest")
        [[ -z ${KEEPS_MANIFESTS[$client]:-} ]] || items=("${items[@]:1}")
        run_logged "$TMP/$client.rm.log" "${client}_rm" "$base:$tag" || true
        setup_ok "$client: $base:$tag removed locally before the warm pull" \
            not "${client}_id" "$base:$tag" || return 0
    fi
    what="$client $phase: pull $ref"
    mark=$(log_mark)
    up_mark=$(upstream_mark)
    if run_logged "$TMP/$client.pull.log" "${client}_pull" "$ref"; then
        pass "$what"
        expect_eq "$what: stored image" "$("${client}_id" "$ref" 2>&1)" "$("${client}_want" "$key")"
    else
        fail "$what"
    fi
    if [[ $phase == warm ]]; then
        MS_NS=${SENDS_NS[$client]:-} MS_CACHE=hit mirror_served "$what" "$mark" "$repo" "${items[@]}"
        return
    fi
    # Cold: the manifests may be answered from what the mirror fetched for an earlier request
    # of the same pull (a HEAD by tag, then a GET by digest); every blob must be a miss that
    # the upstream served exactly once.
    mapfile -t blobs < <(printf '%s\n' "${items[@]}" | grep '^blobs/')
    MS_NS=${SENDS_NS[$client]:-} mirror_served "$what" "$mark" "$repo" "${items[@]}"
    MS_NS=${SENDS_NS[$client]:-} MS_CACHE=miss mirror_served "$what: blobs" "$mark" "$repo" "${blobs[@]}"
    upstream_served_once "$what" "$up_mark" "$repo" "${blobs[@]#blobs/}"
}

# ------------------------------------------------------------ upstream log
# The upstream's access log (combined format, one line per request), e.g.
#   127.0.0.1 - - [02/Dec/2026:10:00:00 +0000] "GET /v2/library/tiny/blobs/sha256:… HTTP/1.1" 200 …
upstream_mark() { wc -l <"$UPSTREAM_LOG"; }

# upstream_blob_gets MARK REPO DIGEST: how many GETs of that blob the upstream answered with
# 200 after MARK.
upstream_blob_gets() {
    tail -n +"$(($1 + 1))" "$UPSTREAM_LOG" | grep -cE "\"GET /v2/$2/blobs/$3 HTTP/[0-9.]+\" 200 " || true
}

# upstream_served_once WHAT MARK REPO DIGEST...: passes when the upstream answered exactly one
# GET of each blob after MARK (the cache fetched each once, however many requests it took).
upstream_served_once() {
    local what=$1 mark=$2 repo=$3 d n bad=""
    shift 3
    for d in "$@"; do
        n=$(upstream_blob_gets "$mark" "$repo" "$d")
        [[ $n == 1 ]] || bad+=" ${d:0:19}…:$n"
    done
    if [[ -z $bad ]]; then
        pass "$what: the upstream served each of its $# blobs exactly once"
    else
        fail "$what: the upstream served each of its $# blobs exactly once" "GETs per blob:$bad"
    fi
}

# ------------------------------------------------------------------- cleanup
LOG_FILES=() # logs whose tails are shown when the run fails
FINISHED=""  # set by run.sh when every stage ran

# cleanup (trap EXIT): stop every started process by pid (last started first),
# unmount what daemons left below TMP, print the closing line.
cleanup() {
    local rc=$? i f
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}" 20; done
    # Anything still running from TMP was started by a daemon and outlived it.
    f=$(pgrep -a -f -- "$TMP/" || true)
    if [[ -n $f ]]; then
        fail "no process left running from $TMP" "$f"
    fi
    umount_under "$TMP"
    if ((rc != 0 || FAILED != 0)); then
        for f in "${LOG_FILES[@]}"; do
            [[ -f $f ]] || continue
            printf '\n---- tail of %s ----\n' "$f"
            tail -n 30 "$f"
        done
    fi
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
