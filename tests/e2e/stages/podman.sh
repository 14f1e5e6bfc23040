# Stage: podman (containers/image, like skopeo), sourced by run.sh.
#
# Its own --root/--runroot/--tmpdir in TMP, the registries.conf mirror stanza and the CA
# in the private /etc/containers/certs.d (containers_config, from skopeo.sh). Pulls
# docker.io/library/... names; Docker Hub is unreachable, so success means the mirror.

PODMAN_IMAGES=(tiny multi)

podman_setup() {
    local dir="$TMP/podman"
    containers_config || return 1
    mkdir -p "$dir/root" "$dir/runroot" "$dir/tmp"
    PODMAN=(env "${CONTAINERS_ENV[@]}" timeout 120 podman --root "$dir/root" --runroot "$dir/runroot"
        --tmpdir "$dir/tmp" --events-backend none --cgroup-manager cgroupfs)
    if ! run_logged "$dir/info.log" "${PODMAN[@]}" info; then
        info "podman cannot run here: $(grep -m1 -iE 'error|fatal' "$dir/info.log" || tail -n1 "$dir/info.log")"
        return 1
    fi
    info "podman storage: $(grep -m1 -E 'graphDriverName' "$dir/info.log" | tr -s ' ')"
}

podman_name() { printf 'docker.io/%s\n' "$2"; }
podman_pull() { "${PODMAN[@]}" pull "$1"; }
podman_rm() { "${PODMAN[@]}" rmi "$1"; }
# podman prints the image ID (the config digest) without its algorithm.
podman_id() {
    local id
    id=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$1") || return 1
    printf 'sha256:%s\n' "${id#sha256:}"
}
podman_want() { platform_image "$1" "$HOST_ARCH" | cut -d' ' -f2; }

podman_cold() {
    local key
    for key in "${PODMAN_IMAGES[@]}"; do client_pull podman cold "$key"; done
}

podman_warm() {
    local key
    for key in "${PODMAN_IMAGES[@]}"; do client_pull podman warm "$key"; done
}
