#!/usr/bin/env bash
# shellcheck disable=SC2016 # the awk and sh -c programs are single-quoted on purpose
#
# Checks systemd/regmirror.service, the shipped unit, in two ways.
#
# 1. `systemd-analyze verify` must print nothing: it exits 0 on an unknown key (`ProtectSystm=`) or
#    a bad value and only warns. Self-test: copies with such mistakes must fail. The exposure from
#    `systemd-analyze security` is printed; above 2.0 fails.
# 2. The real binary runs under the unit's sandbox. systemd boots as PID 1 of its own PID, mount,
#    network, UTS, IPC and cgroup namespaces on an overlay of the root file system (upper layer on a
#    tmpfs), with private /run, /tmp, /var/tmp and /dev, read-only /sys and /proc/sys, and without
#    CAP_SYS_MODULE or CAP_SYS_TIME, so nothing reaches the host. The binary, unit and config are
#    installed as the unit's header says and the unit is started with systemctl. Checked: start
#    returns on READY=1 (Type=notify); the sandbox is in force (uid, seccomp, capabilities, mounts);
#    /readyz answers over TLS with the mirror's own CA; writes as its user fail outside its state
#    directory; SIGTERM ends it with status 0; all that changed on disk during the run (the overlay's
#    upper layer) is its state directory, and no file of its user is left on the tmpfs mounts.
#    Test-only drop-in: DefaultDependencies=no, as sysinit.target would start units that act on the
#    shared kernel (binfmt, swap, sysctl, modules) and write outside the state directory (wtmp); and
#    ExecStopPost= recording $SERVICE_RESULT $EXIT_CODE $EXIT_STATUS, as an inactive unit is unloaded
#    at once and `systemctl show` then reports defaults (Result=success, ExecMainStatus=0).
#
# Needs root, cgroup v2 (or the hybrid /sys/fs/cgroup/unified) and overlayfs; installs systemd,
# util-linux, mount, iproute2 and curl with apt-get when missing. No D-Bus: systemctl as root talks
# to the manager's private socket.
# Usage: tests/systemd/run.sh  (after `cargo build`; REGMIRROR_BIN overrides the binary)
# Output ends with `systemd: N passed, M failed`; exit status non-zero on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SELF=$(readlink -f "${BASH_SOURCE[0]}")
UNIT=$ROOT/systemd/regmirror.service
BIN=$(readlink -m "${REGMIRROR_BIN:-$ROOT/target/debug/regmirror}")
MARKER=/run/regmirror-test/start-marker # inside the namespace
UPPER=/run/regmirror-test/layers/upper  # the overlay's upper layer, inside the namespace

info() { printf 'systemd: %s\n' "$*"; }
die() { printf 'systemd: FATAL: %s\n' "$*" >&2; exit 1; }
PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$1"; [[ -z ${2:-} ]] || printf '%s\n' "$2" | sed 's/^/     | /'; }
# check NAME CMD...: count CMD's success; show its output when it fails.
check() {
    local name=$1 out; shift
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}

# ----------------------------------------------------------------------------- part 1
# verify_clean FILE: verify exits 0 and says nothing (its output is echoed for the reader).
verify_clean() {
    local out
    out=$(systemd-analyze verify "$1" 2>&1) || { printf '%s\n' "$out"; return 1; }
    printf '%s' "$out"
    [[ -z $out ]]
}
# verify_rejects SED WORD: a copy edited by SED fails verify_clean, and the complaint names WORD.
verify_rejects() {
    local dir out
    dir=$(mktemp -d "$T/broken.XXXX")
    sed "$1" "$T/verify/regmirror.service" >"$dir/regmirror.service"
    if cmp -s "$T/verify/regmirror.service" "$dir/regmirror.service"; then echo "'$1' changed nothing"; return 1; fi
    if out=$(verify_clean "$dir/regmirror.service"); then echo "verify passed the broken copy"; return 1; fi
    printf '%s\n' "$out"
    grep -q "$2" <<<"$out"
}
analyze_unit() {
    mkdir "$T/verify"
    # verify checks that ExecStart names an executable, so point it at the binary under test.
    sed "s#/usr/local/bin/regmirror#$BIN#" "$UNIT" >"$T/verify/regmirror.service"
    check "verify: the shipped unit draws no warning" verify_clean "$T/verify/regmirror.service"
    check "verify self-test: ProtectSystm= is reported" \
        verify_rejects 's/^ProtectSystem=/ProtectSystm=/' "Unknown key 'ProtectSystm'"
    check "verify self-test: SystemCallFiltr= is reported" \
        verify_rejects 's/^SystemCallFilter=/SystemCallFiltr=/' "Unknown key 'SystemCallFiltr'"
    check "verify self-test: ProtectSystem=strictt is reported" \
        verify_rejects 's/^ProtectSystem=strict$/&t/' 'protect system value'
    info "$(systemd-analyze security --offline=yes --no-pager "$T/verify/regmirror.service" 2>&1 \
        | grep -a 'Overall exposure')"
    check "security: exposure of the unit file at most 2.0" \
        systemd-analyze security --offline=yes --threshold=20 --no-pager "$T/verify/regmirror.service"
}

# --------------------------------------------------------------- the namespace (inner)
# Runs as PID 1 of the new namespaces: build the root, then become systemd.
inner_boot() {
    local r=$T/layers/root n name major minor
    mount -t tmpfs -o mode=0755 layers "$T/layers"
    mkdir "$T/layers/upper" "$T/layers/work" "$r"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$T/layers/upper,workdir=$T/layers/work" "$r"
    mount -t proc proc "$r/proc"
    # /proc/sys read-only (PID 1 would raise host-wide limits), but the private network's own.
    mount --bind "$r/proc/sys" "$r/proc/sys"
    mount --bind "$r/proc/sys/net" "$r/proc/sys/net"
    mount -o remount,bind,ro "$r/proc/sys"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
    mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup" # rooted at this namespace's own cgroup
    mount -t tmpfs -o mode=0755 dev "$r/dev"
    for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<<"$n"
        mknod -m 666 "$r/dev/$name" c "$major" "$minor"
    done
    mkdir "$r/dev/pts" "$r/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
    ln -s pts/ptmx "$r/dev/ptmx"
    mount -t tmpfs -o mode=1777 shm "$r/dev/shm"
    touch "$r/dev/console" && mount --bind "$T/console.log" "$r/dev/console"
    for n in run tmp var/tmp; do mount -t tmpfs -o mode=0755 "${n//\//-}" "$r/$n"; done
    chmod 1777 "$r/tmp" "$r/var/tmp"
    mkdir -p "$r/run/regmirror-test/layers" "$r/run/regmirror-test/oldroot"
    mount --bind "$T/layers" "$r/run/regmirror-test/layers"
    inner_install "$r"
    ip link set lo up
    cd "$r" && pivot_root . run/regmirror-test/oldroot && umount -l /run/regmirror-test/oldroot
    exec setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend -- \
        env -i container=regmirror-test /lib/systemd/systemd --system --unit=regmirror-test.target
}
# inner_install ROOT: the unit's own install steps, plus what this test adds under /run.
inner_install() {
    local r=$1 d=$1/run/systemd u
    install -D -m 0644 "$ROOT/systemd/regmirror.service" "$r/etc/systemd/system/regmirror.service"
    install -D -m 0644 "$ROOT/systemd/regmirror.toml" "$r/etc/regmirror/config.toml"
    install -d "$r/usr/local/bin" && touch "$r/usr/local/bin/regmirror"
    mount --bind "$BIN" "$r/usr/local/bin/regmirror" && mount -o remount,bind,ro "$r/usr/local/bin/regmirror"
    mkdir -p "$d/system/regmirror.service.d" "$d/journald.conf.d"
    printf '[Unit]\nDescription=regmirror sandbox test\nDefaultDependencies=no\nWants=systemd-journald.service\n' \
        >"$d/system/regmirror-test.target"
    printf '[Journal]\nStorage=volatile\n' >"$d/journald.conf.d/volatile.conf"
    printf '%s\n' '[Unit]' 'DefaultDependencies=no' '[Service]' \
        "ExecStopPost=+/bin/sh -c 'echo \$SERVICE_RESULT \$EXIT_CODE \$EXIT_STATUS >/run/regmirror-test/stop-result'" \
        >"$d/system/regmirror.service.d/test.conf"
    # The unit wants network-online.target, with nothing to wait for in an empty network
    # namespace. tmpfiles cleans and creates all over the file system: nothing here pulls it in,
    # and the masks make sure.
    for u in network-online.target systemd-tmpfiles-setup.service systemd-tmpfiles-clean.timer; do
        ln -s /dev/null "$d/system/$u"
    done
}
if [[ -n ${REGMIRROR_SYSTEMD_INNER:-} ]]; then inner_boot; fi

# --------------------------------------------------------------- the namespace (outer)
# in_ns CMD...: CMD in the manager's mount and PID namespaces, bounded in time like every wait here.
in_ns() { nsenter -t "$NS_PID" -m -p -- timeout 90 "$@"; }
svc() { in_ns systemctl show -P "$1" regmirror.service; }
# as_service CMD...: CMD inside the service's mount namespace, as its user, without capabilities.
as_service() { in_ns nsenter -t "$MAIN_PID" -m -S "$SVC_UID" -G "$SVC_UID" -- "$@"; }
journal() { in_ns journalctl -D /run/log/journal --no-pager "$@" 2>&1 | tail -n 25; }

boot() {
    local cg i
    cg=$(cgroup_root) # on its own line, so that its failure stops the script
    cg+=/regmirror-test.$$
    mkdir "$cg"
    CGROUP=$cg
    mkdir "$T/layers"
    touch "$T/console.log"
    # The child joins the new cgroup first, so the namespace's cgroup tree starts there.
    REGMIRROR_SYSTEMD_INNER=1 T=$T bash -c 'echo $$ >"$1/cgroup.procs" && exec "${@:2}"' _ "$cg" \
        unshare --pid --fork --kill-child --mount --net --uts --ipc --cgroup --propagation private -- bash "$SELF" \
        >"$T/setup.log" 2>&1 </dev/null &
    UNSHARE_PID=$!
    for ((i = 0; i < 300; i++)); do
        NS_PID=$(tr -d ' ' 2>/dev/null <"/proc/$UNSHARE_PID/task/$UNSHARE_PID/children") || true
        [[ -n $NS_PID && -S /proc/$NS_PID/root/run/systemd/private ]] && break
        kill -0 "$UNSHARE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -n $NS_PID ]] \
        && timeout 60 nsenter -t "$NS_PID" -m -p -- systemctl is-system-running --wait >/dev/null 2>&1; then
        info "manager up: $(in_ns systemctl --version | head -n1), PID 1 of its namespaces (pid $NS_PID here)"
        BOOTED=1
    else
        fail "boot a systemd manager in private namespaces" \
            "$(echo "no manager answered; setup and console output:"; tail -n 20 "$T/setup.log" "$T/console.log")"
    fi
}
cgroup_root() {
    local dir
    for dir in /sys/fs/cgroup /sys/fs/cgroup/unified; do
        [[ $(stat -f -c %T "$dir" 2>/dev/null) == cgroup2fs ]] && { echo "$dir"; return; }
    done
    die "no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"
}

# status_of FIELD: the first value of FIELD in the service's /proc/PID/status.
status_of() { awk -v k="$1:" '$1 == k { print $2 }' <<<"$STATUS"; }
# mount_of PATH: "root options" of the topmost mount at PATH in the service's mount namespace.
mount_of() { in_ns awk -v p="$1" '$5 == p { m = $4 " " $6 } END { print m }' "/proc/$MAIN_PID/mountinfo"; }
has() { grep -qE -- "$2" <<<"$1" || { printf 'got: %s\nwant: %s\n' "$1" "$2"; return 1; }; }
# refused PATH: creating PATH as the service's user fails (counted, with the reason).
refused() {
    local err
    if err=$(as_service sh -c 'touch "$1" && rm -f "$1"' _ "$1" 2>&1); then
        fail "  refused: $1" "it was written"
    else
        pass "  refused: $1 (${err##*: })"
    fi
}

run_service() {
    local ready
    in_ns touch "$MARKER"
    check "start: systemctl start returns once READY=1 arrives (Type=notify)" \
        in_ns timeout 60 systemctl start regmirror.service
    check "start: active (running), Type=notify" \
        has "$(svc ActiveState) $(svc SubState) $(svc Type)" '^active running notify$'
    MAIN_PID=$(svc MainPID)
    [[ $MAIN_PID -gt 0 ]] || { fail "the service has a main process" "$(journal -u regmirror.service)"; return; }
    STATUS=$(in_ns cat "/proc/$MAIN_PID/status")
    SVC_UID=$(status_of Uid)
    check "DynamicUser=yes: runs as uid $SVC_UID (61184-65519)" test "$SVC_UID" -ge 61184 -a "$SVC_UID" -le 65519
    check "NoNewPrivileges=yes" has "$(status_of NoNewPrivs)" '^1$'
    check "SystemCallFilter= etc.: seccomp filters ($(status_of Seccomp_filters))" has "$(status_of Seccomp)" '^2$'
    check "CapabilityBoundingSet=: no capabilities" has "$(status_of CapBnd) $(status_of CapEff)" '^0+ 0+$'
    check "ProtectSystem=strict: / is read-only" has "$(mount_of /)" '^/ ro,'
    check "ProtectHome=yes: /home is inaccessible" has "$(mount_of /home)" 'inaccessible/dir ro,'
    check "ProtectProc=invisible" has "$(in_ns grep -E ' /proc proc ' "/proc/$MAIN_PID/mounts")" 'hidepid=invisible'
    check "ProtectKernelTunables=yes: /proc/sys is read-only" has "$(mount_of /proc/sys)" ' ro,'
    check "ProtectControlGroups=yes: /sys/fs/cgroup is read-only" has "$(mount_of /sys/fs/cgroup)" ' ro,'
    check "PrivateTmp=yes: its own /tmp" has "$(mount_of /tmp)" '^/systemd-private-.*-regmirror.service-'
    check "ProtectHostname=yes: its own UTS namespace" \
        test "$(in_ns readlink "/proc/$MAIN_PID/ns/uts")" != "$(in_ns readlink /proc/1/ns/uts)"
    ready=$(nsenter -t "$NS_PID" -n -- curl -sS --max-time 5 -w ' %{http_code}' \
        --cacert "/proc/$NS_PID/root/var/lib/regmirror/certs/ca.crt" https://localhost:5000/readyz 2>&1) || true
    check "/readyz answers 200 over TLS with the mirror's own CA" has "$ready" '^\{"status":"ready"\} 200$'
    info "writes as the service's user ($SVC_UID) in its mount namespace:"
    for path in /regmirror-probe /etc/regmirror-probe /etc/regmirror/probe /usr/local/bin/probe \
        /var/lib/probe /var/log/probe /run/probe /home/probe; do
        refused "$path"
    done
    check "  allowed: its state directory" \
        as_service sh -c 'touch /var/lib/regmirror/.probe && rm /var/lib/regmirror/.probe'
    check "  allowed: its private /tmp" as_service touch /tmp/probe
    info "$(in_ns systemd-analyze security --no-pager regmirror.service 2>&1 | grep -a 'Overall exposure') (as loaded)"
    stop_service
}

stop_service() {
    local started elapsed
    started=$(date +%s)
    check "stop: systemctl stop (SIGTERM) returns" in_ns timeout 60 systemctl stop regmirror.service
    elapsed=$(($(date +%s) - started))
    check "stop: done in ${elapsed}s, well before TimeoutStopSec=45s" test "$elapsed" -lt 30
    check "stop: inactive, not failed" has "$(svc ActiveState)" '^inactive$'
    check "stop: result success, main process exited with status 0" \
        has "$(cat "/proc/$NS_PID/root/run/regmirror-test/stop-result" 2>&1)" '^success exited 0$'
    info "last lines of the service's journal:"
    journal -u regmirror.service | tail -n 5 | sed 's/^/     | /'
    check "disk: every change during the run is the state directory" changes_are_state
    check "disk: the state directory holds the CA, the server certificate and the cache" \
        in_ns sh -c 'cd /var/lib/private/regmirror && test -s certs/ca.crt -a -s certs/server.crt -a -d blobs/sha256 \
            -a -d manifests/sha256'
    check "tmpfs: no file of uid $SVC_UID left in /run, /dev/shm, /tmp or /var/tmp" no_files_left
}
no_files_left() {
    local left
    left=$(in_ns find /run /dev/shm /tmp /var/tmp -path /run/regmirror-test -prune -o -uid "$SVC_UID" -print) \
        || return 1
    [[ -z $left ]] || { printf '%s\n' "$left"; return 1; }
}
# Everything written to the root file system since the marker, against what the unit allows:
# its state directory, the (empty) cache directory systemd makes, their symlinks and parents.
changes_are_state() {
    local path kind bad="" state=0 listing
    listing=$(in_ns find "$UPPER" -newer "$MARKER" -printf '%P\t%y\n') || return 1
    while IFS=$'\t' read -r path kind; do
        case $path in
            var/lib/private/regmirror | var/lib/private/regmirror/*) state=$((state + 1)) ;;
            var/lib/regmirror | var/cache/regmirror | var/cache/private/regmirror) ;;
            etc/.pwd.lock) ;; # systemd locks it to allocate the dynamic user
            "" | var | var/lib | var/lib/private | var/cache | var/cache/private)
                [[ $kind == d ]] || bad+="$path ($kind)"$'\n' ;;
            *) bad+="$path ($kind)"$'\n' ;;
        esac
    done <<<"$listing"
    [[ -z $bad ]] || { printf 'written outside the state directory:\n%s' "$bad"; return 1; }
    ((state > 0)) || { echo "nothing was written in the state directory"; return 1; }
}

cleanup() {
    local i
    # The namespace's PID 1, while unshare still waits for it: its death ends every process inside.
    # Without it (a failed boot), unshare's --kill-child takes its child along.
    if [[ -n ${UNSHARE_PID:-} ]] && kill -0 "$UNSHARE_PID" 2>/dev/null; then
        if [[ -n ${NS_PID:-} ]]; then kill -KILL "$NS_PID" || true; else kill -TERM "$UNSHARE_PID" || true; fi
        wait "$UNSHARE_PID" 2>/dev/null || true
    fi
    if [[ -n ${CGROUP:-} ]]; then
        for ((i = 0; i < 50; i++)); do
            find "$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [[ -d $CGROUP ]] || break
            sleep 0.1
        done
    fi
    rm -rf "$T"
}

prerequisites() {
    local cmd missing=()
    declare -A pkg=([systemd-analyze]=systemd [systemctl]=systemd [journalctl]=systemd [unshare]=util-linux
        [nsenter]=util-linux [setpriv]=util-linux [pivot_root]=util-linux [mount]=mount [ip]=iproute2 [curl]=curl)
    [[ $(id -u) -eq 0 ]] || die "needs root (namespaces, mounts, a systemd manager)"
    [[ -x $BIN ]] || die "no regmirror binary at $BIN (run cargo build, or set REGMIRROR_BIN)"
    for cmd in "${!pkg[@]}"; do command -v "$cmd" >/dev/null || missing+=("${pkg[$cmd]}"); done
    [[ -x /lib/systemd/systemd ]] || missing+=(systemd)
    if ((${#missing[@]})); then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        info "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

prerequisites
T=$(mktemp -d "${TMPDIR:-/tmp}/regmirror-systemd.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT TERM
info "unit: $UNIT; binary: $BIN ($("$BIN" --version))"
analyze_unit
BOOTED=""
boot
if [[ -n $BOOTED ]]; then run_service; fi
printf '\nsystemd: %d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
