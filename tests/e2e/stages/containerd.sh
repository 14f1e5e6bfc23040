# Stage: containerd with ctr (sourced by run.sh).
#
# A containerd of its own (root, state, sockets in TMP; the CRI plugin disabled), and
# `ctr images pull --hosts-dir` with docker.io/hosts.toml naming https://regmirror.test:PORT
# (pull, resolve) and regmirror's CA. containerd sends ?ns=docker.io on every request.
# Sets: CTRD_SOCK (dockerd reuses this containerd).

CONTAINERD_IMAGES=(tiny multi)
SENDS_NS["containerd"]=docker.io

containerd_setup() {
    local dir="$TMP/containerd"
    mkdir -p "$dir/hosts/docker.io"
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
    cp "$CACERT" "$dir/hosts/docker.io/regmirror-ca.crt"
    cat >"$dir/hosts/docker.io/hosts.toml" <<EOF
server = "https://registry-1.docker.io"

[host."https://$M"]
  capabilities = ["pull", "resolve"]
  ca = "$dir/hosts/docker.io/regmirror-ca.crt"
EOF
    info "hosts.toml ($dir/hosts/docker.io/hosts.toml):"
    sed 's/^/     | /' "$dir/hosts/docker.io/hosts.toml"
    LOG_FILES+=("$dir/containerd.log")
    start_bg containerd "$dir/containerd.log" containerd --config "$dir/config.toml"
    CTR=(timeout 120 ctr -a "$dir/containerd.sock")
    wait_until containerd "$BG_PID" 100 "${CTR[@]}" version || return 1
    CTRD_SOCK="$dir/containerd.sock"
    CTR_HOSTS="$dir/hosts"
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
