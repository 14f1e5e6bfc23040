# Stage: dockerd 20.10, classic image store (sourced by run.sh).
#
# A dockerd of its own (data root, exec root, pidfile, socket in TMP; no iptables, no
# bridge) with {"registry-mirrors": ["https://regmirror.test:PORT"]} and regmirror's CA in a
# private /etc/docker/certs.d/regmirror.test:PORT/ca.crt. Images are pulled by their Docker
# Hub names (tiny:1, someuser/tool:latest); Docker Hub resolves to 127.0.0.1 and refuses,
# so a pull that succeeds came from the mirror. It reuses the containerd stage's daemon
# when that one runs (otherwise dockerd starts its own).

DOCKER_IMAGES=(tiny tool)

docker_setup() {
    local dir="$TMP/docker" args=()
    mkdir -p "$dir/cli"
    private_dir /etc/docker >/dev/null || return 1
    mkdir -p "/etc/docker/certs.d/$M" && cp "$CACERT" "/etc/docker/certs.d/$M/ca.crt" || return 1
    printf '{"registry-mirrors": ["https://%s"]}\n' "$M" >"$dir/daemon.json"
    info "daemon.json: $(cat "$dir/daemon.json"); CA: /etc/docker/certs.d/$M/ca.crt (private bind mount)"
    [[ -z ${CTRD_SOCK:-} ]] || args+=(--containerd "$CTRD_SOCK")
    LOG_FILES+=("$dir/dockerd.log")
    start_bg dockerd "$dir/dockerd.log" dockerd --data-root "$dir/root" --exec-root "$dir/exec" \
        --pidfile "$dir/dockerd.pid" -H "unix://$dir/docker.sock" --config-file "$dir/daemon.json" \
        --iptables=false --ip6tables=false --bridge=none "${args[@]}"
    # DOCKER_CONFIG: no credentials of this machine's user reach the mirror.
    DOCKER=(env DOCKER_CONFIG="$dir/cli" timeout 120 "$DOCKER_CLI" -H "unix://$dir/docker.sock")
    wait_until dockerd "$BG_PID" 150 "${DOCKER[@]}" version || return 1
    "${DOCKER[@]}" info >"$dir/info.txt" 2>&1 || true
    check "docker info lists the mirror https://$M/" grep -qF "https://$M/" "$dir/info.txt"
    check "docker info: classic image store (Storage Driver overlay2 or vfs)" \
        grep -qE 'Storage Driver: (overlay2|vfs)' "$dir/info.txt"
}

docker_name() { printf '%s\n' "$1"; }
docker_pull() { "${DOCKER[@]}" pull "$1"; }
docker_rm() { "${DOCKER[@]}" rmi "$1"; }
docker_id() { "${DOCKER[@]}" image inspect --format '{{.Id}}' "$1"; }
# The image ID is the config digest.
docker_want() { platform_image "$1" "$HOST_ARCH" | cut -d' ' -f2; }

docker_cold() {
    local key
    for key in "${DOCKER_IMAGES[@]}"; do client_pull docker cold "$key"; done
}

docker_warm() {
    local key
    for key in "${DOCKER_IMAGES[@]}"; do client_pull docker warm "$key"; done
}
