# Stage: dockerd 20.10, classic image store (sourced by run.sh).
#
# A dockerd of its own (data root, exec root, pidfile, socket in TMP; no iptables, no
# bridge) with {"registry-mirrors": ["https://regmirror.test:PORT"]} and regmirror's CA in a
# private /etc/docker/certs.d/regmirror.test:PORT/ca.crt. Images are pulled by their Docker
# Hub names (tiny:1, someuser/tool:latest); Docker Hub resolves to 127.0.0.1 and refuses,
# so a pull that succeeds came from the mirror.
# dockerd gets a containerd of its own (containerd_start, from containerd.sh): sharing
# ctr's would make containerd 1.6 fail to persist manifests both had pulled (dockerd logs
# "Error persisting manifest ... failed size validation: 1170 != 585", harmless to the
# pull), and a containerd that dockerd starts itself would write /opt/containerd.

DOCKER_IMAGES=(tiny tool)
# dockerd 20.10 also stores each manifest it pulls in its containerd's content store, and
# `docker rmi` leaves it there: pulled again by digest, a Docker v2s2 manifest (tiny) is
# then read locally, not asked of the mirror (until containerd garbage-collects it).
KEEPS_MANIFESTS["docker"]=1

docker_setup() {
    local dir="$TMP/docker"
    mkdir -p "$dir/cli"
    private_dir /etc/docker
    mkdir -p "/etc/docker/certs.d/$M" && cp "$CACERT" "/etc/docker/certs.d/$M/ca.crt" || return 1
    printf '{"registry-mirrors": ["https://%s"]}\n' "$M" >"$dir/daemon.json"
    info "daemon.json: $(cat "$dir/daemon.json"); CA: /etc/docker/certs.d/$M/ca.crt (private bind mount)"
    containerd_start containerd-for-dockerd "$dir/containerd" || return 1
    LOG_FILES+=("$dir/dockerd.log")
    start_bg dockerd "$dir/dockerd.log" dockerd --data-root "$dir/root" --exec-root "$dir/exec" \
        --pidfile "$dir/dockerd.pid" -H "unix://$dir/docker.sock" --config-file "$dir/daemon.json" \
        --iptables=false --ip6tables=false --bridge=none --containerd "$CTRD_SOCK"
    # DOCKER_CONFIG: no credentials of this machine's user reach the mirror.
    DOCKER=(env DOCKER_CONFIG="$dir/cli" timeout 120 "$DOCKER_CLI" -H "unix://$dir/docker.sock")
    wait_until dockerd "$BG_PID" 150 "${DOCKER[@]}" version || return 1
    "${DOCKER[@]}" info >"$dir/info.txt" 2>&1 || true
    setup_ok "docker info lists the mirror https://$M/" grep -qF "https://$M/" "$dir/info.txt" || return 1
    setup_ok "docker info: classic image store (Storage Driver overlay2 or vfs)" \
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
    docker_without_ca
}

# docker_without_ca: the control. dockerd reads certs.d on every pull, so with the CA
# set aside a pull of an image it does not have (ociimg:1) must fail with a certificate
# error on the mirror: regmirror's CA is what made dockerd trust it.
docker_without_ca() {
    local ca="/etc/docker/certs.d/$M/ca.crt" log="$TMP/docker/dockerd.log" mark
    mv "$ca" "$TMP/docker/ca.crt.aside"
    mark=$(wc -l <"$log")
    if "${DOCKER[@]}" pull ociimg:1 >"$TMP/docker/no-ca.out" 2>&1; then
        fail "docker pull ociimg:1 without regmirror's CA in certs.d fails" "it succeeded"
    else
        pass "docker pull ociimg:1 without regmirror's CA in certs.d fails: $(tail -n1 "$TMP/docker/no-ca.out")"
    fi
    if tail -n +"$((mark + 1))" "$log" | grep -F "$M" | grep -qE 'x509|certificate'; then
        pass "dockerd logged a certificate error for https://$M without the CA"
    else
        fail "dockerd logged a certificate error for https://$M without the CA"
        tail -n +"$((mark + 1))" "$log" | grep -iE 'error|warn' | tail -n 5 | sed 's/^/     | /'
    fi
    mv "$TMP/docker/ca.crt.aside" "$ca"
}

docker_warm() {
    local key
    for key in "${DOCKER_IMAGES[@]}"; do client_pull docker warm "$key"; done
}
