# shellcheck shell=bash
# Helpers for bench/run.sh (sourced, not run): processes, ports, timing, recording.
#
# Globals: TMP (the run's directory), RESULTS (TSV of samples: key, value, unit),
# LOG (the run's own log).

say() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }
die() { say "FATAL: $*"; exit 1; }

# record KEY VALUE UNIT: one sample; report.py aggregates the samples of a key.
record() {
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"
    say "  $1 = $2 $3"
}

# ------------------------------------------------------------------ processes
PIDS=()                # every background process started, in start order
declare -A PID_NAME=() # pid -> name

# spawn NAME LOGFILE CMD...: start CMD in the background (it becomes the process: no
# subshell, so the pid is the server's own, for /proc/PID/status); sets SPAWNED.
spawn() {
    local name=$1 out=$2; shift 2
    "$@" >"$out" 2>&1 &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
    PID_NAME[$SPAWNED]=$name
    say "started $name (pid $SPAWNED)"
}

# stop PID: TERM, up to 10 s, then KILL; reaps it.
stop() {
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "${PID_NAME[$pid]:-pid $pid} ignored TERM for 10 s; KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# stop_all: every process spawn started and still running, newest first (trap EXIT).
stop_all() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop "${PIDS[i]}"; done
    PIDS=()
}

# await_http NAME PID URL [CURL ARGS...]: poll URL every 0.1 s, at most 300 times (30 s),
# while PID lives.
await_http() {
    local name=$1 pid=$2 url=$3 i; shift 3
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) exited while starting; see its log in $TMP"
        if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name did not answer $url in 30 s"
}

# port: a free TCP port on 127.0.0.1 (bound and released; nothing else here takes ports).
port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ----------------------------------------------------------------- measuring
# now: seconds since the epoch, microseconds.
now() { printf '%s\n' "$EPOCHREALTIME"; }
# since T0: seconds elapsed since T0, three decimals.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }'; }

# hwm_reset PID / hwm PID: reset and read the peak resident set (VmHWM, KiB) of PID.
hwm_reset() { echo 5 >"/proc/$1/clear_refs"; }
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# cpu_ms PID...: user + system CPU time the processes have used so far, in ms.
CLK_TCK=$(getconf CLK_TCK)
cpu_ms() {
    local p
    for p in "$@"; do sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null || true; done |
        awk -v hz="$CLK_TCK" '{ t += $12 + $13 } END { printf "%d\n", t * 1000 / hz }'
}

# log_mark FILE / upstream_blob_bytes FILE MARK: bytes and count of the blob GETs the
# upstream registry answered (its access log, combined format) after MARK, as "BYTES COUNT".
log_mark() { wc -l <"$1"; }
upstream_blob_bytes() {
    tail -n +"$(($2 + 1))" "$1" |
        awk '/"GET \/v2\/[^ ]*\/blobs\/sha256:[0-9a-f]+ HTTP\/[0-9.]+" 20[06] / {
                 for (i = 1; i < NF; i++) if ($i ~ /^20[06]$/ && $(i - 1) ~ /HTTP/) { b += $(i + 1); n++ }
             } END { printf "%d %d\n", b, n }'
}
