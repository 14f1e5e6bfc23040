# Stage: containerd with ctr (sourced by run.sh).
#
# A containerd of its own (root, state, sockets in TMP; the CRI plugin disabled), and
# `ctr images pull --hosts-dir` with docker.io/hosts.toml naming https://regmirror.test:PORT
# (pull, resolve) and regmirror's CA. containerd sends ?ns=docker.io on every request.
# containerd_start is also used by the docker stage, for dockerd's own containerd.

CONTAINERD_IMAGES=(tiny multi)
SENDS_NS["containerd"]=docker.io

# containerd_start NAME DIR: a containerd with its root, state, sockets and config in
# DIR; sets CTRD_SOCK to its socket. Returns 1 if it does not come up.
containerd_start() {
    local name=$1 dir=$2
    mkdir -p "$dir"
    cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$dir/containerd.sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
EOF
    LOG_FILES+=("$dir/containerd.log")
    start_bg "$name" "$dir/containerd.log" containerd --config "$dir/config.toml"
    wait_until "$name" "$BG_PID" 100 ctr -a "$dir/containerd.sock" version || return 1
    CTRD_SOCK="$dir/containerd.sock"
}

containerd_setup() {
    local dir="$TMP/containerd"
    containerd_start containerd "$dir" || return 1
    CTR=(timeout 120 ctr -a "$CTRD_SOCK")
    CTR_HOSTS="$dir/hosts"
    mkdir -p "$CTR_HOSTS/docker.io"
    cp "$CACERT" "$CTR_HOSTS/docker.io/regmirror-ca.crt"
    cat >"$CTR_HOSTS/docker.io/hosts.toml" <<EOF
server = "https://registry-1.docker.io"

[host."https://$M"]
  capabilities = ["pull", "resolve"]
  ca = "$CTR_HOSTS/docker.io/regmirror-ca.crt"
EOF
    info "hosts.toml ($CTR_HOSTS/docker.io/hosts.toml):"
    sed 's/^/     | /' "$CTR_HOSTS/docker.io/hosts.toml"
}

containerd_name() { printf 'docker.io/%s\n' "$2"; }
containerd_pull() { "${CTR[@]}" images pull --hosts-dir "$CTR_HOSTS" "$1"; }
containerd_rm() { "${CTR[@]}" images rm --sync "$1"; }
# The image's target digest (the manifest or index pulled).
containerd_id() {
    local d
    d=$("${CTR[@]}" images ls "name==$1" | awk 'NR > 1 { print $3 }')
    [[ -n $d ]] && printf '%s\n' "$d"
}
containerd_want() { summary_field "$1" manifest; }

containerd_cold() {
    local key
    for key in "${CONTAINERD_IMAGES[@]}"; do client_pull containerd cold "$key"; done
}

containerd_warm() {
    local key
    for key in "${CONTAINERD_IMAGES[@]}"; do client_pull containerd warm "$key"; done
}
