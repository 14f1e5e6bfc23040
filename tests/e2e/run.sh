#!/usr/bin/env bash
# End-to-end test of regmirror with real clients, trusting regmirror's own CA.
#
# Debian's docker-registry (the reference registry, distribution 2.8) stands in for
# Docker Hub over HTTPS, as upstream.test on 127.0.0.1, with a certificate from a CA of the
# run's own that regmirror is told of with --upstream-ca (and nothing else trusts). Test
# images from tests/e2e/mkimages.py are pushed to it. regmirror runs with the CA and server
# certificate it made itself (`regmirror cert init`, then `serve` with no TLS flags), on
# [::1] only, named regmirror.test. Each client then gets a cold run of its own: the
# mirror is stopped, its cache pruned to nothing and the mirror started again, then
#   skopeo      docker.io/library/ociimg:1 through a registries.conf mirror stanza
#   podman      docker.io/library/tiny:1 and multi:1 through the same stanza
#   containerd  ctr pull --hosts-dir of docker.io/library/tiny:1 and multi:1 (?ns=docker.io)
#   dockerd     20.10 with registry-mirrors: docker pull tiny:1 and someuser/tool:latest
# and each cold pull must show in the mirror's log as a miss for every blob, and in the
# upstream's access log as exactly one GET per blob. skopeo then copies every image by the
# mirror's own name (byte-identical), which also fills the cache for the warm pulls: by
# digest with the upstream stopped, after removing the image from the client, each answered
# from the cache per the mirror's log. A mirror trusting the wrong CA for the upstream must
# fail a pull promptly, naming the certificate. `regmirror cache` stats, ls and verify run
# against the live cache, verify and prune against a corrupted copy (stages/cache.sh).
# Air gap (stages/offline.sh): prefetch + export while the upstream is up; with it stopped,
# import into an empty data dir, serve --offline, docker pull through it, and a docker save
# tarball imported beside it and pulled back.
# Private upstream (stages/private.sh): a second docker-registry with htpasswd auth, mirrored
# by a second regmirror from a config file ([[registries]] with credentials, [access] with its
# own htpasswd users, optional client certificates and rules); podman login + pull by path
# prefix (and 401 without login), dockerd pull with a `regmirror cert client` certificate.
# Tokens (stages/tokens.sh): the private mirror's own token service, used by skopeo --creds,
# ctr --user, docker login + pull, and an anonymous docker pull through registry-mirrors.
# Hosted repositories (stages/hosted*.sh): a third regmirror with --hosted-namespace site.lan on
# [::1]:443, so clients name it plainly as regmirror.test, with an empty data dir of its own.
# Fresh images (mkimages.py) are pushed: `docker push regmirror.test/site.lan/gallery/ui:v1` of a
# `docker load`ed docker-archive, `podman push` of a `podman load`ed oci-archive
# (site.lan/gallery/api:v1), `skopeo copy --all` of an OCI index (site.lan/base/multi:1). Each is
# pulled back by docker, podman, skopeo and ctr (hosts.toml), by tag and by digest, and must carry
# the pushed digest; skopeo copies api to another hosted repository by mounting its layers. curl
# attaches two referrer artifacts to api (blob uploads: monolithic POST, POST + PATCH + PUT) and
# lists them with GET .../referrers/<digest> (and ?artifactType=), then DELETEs ui's manifest,
# after which every client's pull is a 404; `regmirror gc` beside the running server frees ui's
# blobs and keeps api's, multi's and the referrers'.
# Fleet (stages/fleet.sh): three regmirror instances with --fleet on [::1], sharing the mirror's
# certificates; 16 concurrent cold skopeo pulls of a generated 60 MiB image spread over them cost
# the upstream one GET per blob; one instance is killed with SIGKILL during 12 cold pulls of
# another such image through the other two, which all complete verified; after it restarts,
# warm pulls from every instance cost the upstream no blob GET.
# Bucket (stages/bucket.sh): three Garage nodes (replication factor 3) and a second such fleet
# on one bucket; 16 cold pulls cost one upstream GET per blob and put each blob in the bucket;
# a Garage node and then an instance are killed with SIGKILL during cold pulls, which all
# complete verified; after everything restarts (one instance with an empty data directory)
# every blob in the bucket hashes to its key and warm pulls cost the upstream no blob GET.
#
# It runs in its own network and mount namespace (unshare --net --mount): only `lo`, and
# private bind mounts over /etc/hosts (regmirror.test -> ::1 only; Docker Hub's names ->
# 127.0.0.1, so a client falling back to Docker Hub fails at once), /etc/docker and
# /etc/containers (certs.d with regmirror's CA). Nothing of the machine's /etc changes.
# Why ::1: dockerd treats registries in 127.0.0.0/8 as insecure and skips certificate
# checks, so a mirror on 127.0.0.1 would not prove that dockerd trusts the CA.
#
# Needs root. Installs with apt-get when missing (`apt-get update` runs once, only if
# something is missing): docker.io, containerd, podman, skopeo, docker-registry, openssl,
# curl, iproute2, util-linux, mount, python3, coreutils, apache2-utils (htpasswd).
#
# Usage: tests/e2e/run.sh            (after `cargo build`)
# Env:   REGMIRROR_BIN  mirror binary (default: <repo>/target/debug/regmirror)
#        E2E_KEEP=1     keep the temp dir (logs, data) afterwards
#        RUST_LOG       passed to regmirror (default: info)
#        REGMIRROR_GARAGE  garage binary for the bucket stage (default: garage on PATH)
#        E2E_STAGES     which stages run after the shared setup (images, upstream, mirror, each
#                       client's setup): "clients hosted fleet bucket" (default) or a subset, e.g.
#                       E2E_STAGES=hosted while working on hosted repositories
# Output ends with `e2e: N passed, M failed`; exit status non-zero on failure.
# Layout: lib.sh (helpers), stages/*.sh (upstream, mirror, one file per client, hosted*).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/e2e"
SELF=$(readlink -f "${BASH_SOURCE[0]}")
# shellcheck source=tests/e2e/lib.sh
source "$HERE/lib.sh"

# Resolve the binary before a re-exec so a relative path keeps its meaning.
REGMIRROR_BIN=${REGMIRROR_BIN:-$ROOT/target/debug/regmirror}
[[ $REGMIRROR_BIN == /* ]] || REGMIRROR_BIN="$ROOT/$REGMIRROR_BIN"
[[ -x $REGMIRROR_BIN ]] || die "no regmirror binary at $REGMIRROR_BIN (run cargo build, or set REGMIRROR_BIN)"
export REGMIRROR_BIN

# ------------------------------------------------- prerequisites, then the namespace
if [[ -z "${REGMIRROR_E2E_INNER:-}" ]]; then
    step "prerequisites"
    [[ $(id -u) -eq 0 ]] || die "needs root (daemons, network and mount namespace); run with sudo"
    declare -A PKG_OF=(
        [dockerd]=docker.io [docker]=docker.io [containerd]=containerd [ctr]=containerd
        [podman]=podman [skopeo]=skopeo [docker-registry]=docker-registry [openssl]=openssl
        [python3]=python3 [curl]=curl [ip]=iproute2 [unshare]=util-linux [findmnt]=util-linux
        [mount]=mount [getent]=libc-bin [timeout]=coreutils [sha256sum]=coreutils
        [htpasswd]=apache2-utils
    )
    missing=()
    for cmd in "${!PKG_OF[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG_OF[$cmd]}")
    done
    if ((${#missing[@]})); then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        info "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # Debian's docker.io ships /usr/bin/docker; prefer it to another CLI earlier in PATH.
    DOCKER_CLI=$(command -v docker)
    [[ ! -x /usr/bin/docker ]] || DOCKER_CLI=/usr/bin/docker
    export DOCKER_CLI
    info "regmirror: $("$REGMIRROR_BIN" --version)"
    info "dockerd: $(dockerd --version)"
    info "docker CLI ($DOCKER_CLI): $("$DOCKER_CLI" --version)"
    info "containerd: $(containerd --version)"
    info "ctr: $(ctr --version)"
    info "podman: $(podman --version)"
    info "skopeo: $(skopeo --version)"
    info "runc: $(runc --version 2>&1 | head -n1)"
    info "docker-registry: $(docker-registry --version 2>&1 | head -n1)"
    info "curl: $(curl --version | head -n1)"
    unshare --net --mount true 2>/dev/null || die "unshare --net --mount is not permitted here"
    info "re-running inside a fresh network and mount namespace (unshare --net --mount)"
    REGMIRROR_E2E_INNER=1 exec unshare --net --mount --propagation private -- bash "$SELF" "$@"
fi

ip link set lo up
info "network namespace: only lo ($(ip -brief addr show lo | tr -s ' '))"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/regmirror-e2e.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT TERM

private_file /etc/hosts "127.0.0.1 localhost $(hostname)
::1 localhost ip6-localhost ip6-loopback
# regmirror, on ::1 only (not in 127.0.0.0/8, which dockerd treats as insecure)
::1 regmirror.test
# the upstream registry (docker-registry over HTTPS)
127.0.0.1 upstream.test
# Docker Hub: refused at once, so a client falling back to it fails fast
127.0.0.1 registry-1.docker.io index.docker.io docker.io auth.docker.io production.cloudflare.docker.com"
info "private /etc/hosts:"
sed 's/^/     | /' /etc/hosts

for stage in upstream mirror skopeo podman containerd docker cache offline private tokens \
    hosted hosted_pull hosted_api fleet bucket; do
    # shellcheck source=/dev/null
    source "$HERE/stages/$stage.sh"
done
# Cold pulls run client by client, each right after its setup and from an empty cache:
# podman's pull happens before dockerd's stage puts the CA in /etc/docker/certs.d, which
# containers/image also reads, so it proves /etc/containers/certs.d.
CLIENTS=(skopeo podman containerd docker)

E2E_STAGES=${E2E_STAGES:-clients hosted fleet bucket}
for stage in $E2E_STAGES; do
    [[ $stage == clients || $stage == hosted || $stage == fleet || $stage == bucket ]] \
        || die "E2E_STAGES: unknown stage '$stage' (clients, hosted, fleet, bucket)"
done
# stage_on NAME: whether E2E_STAGES names NAME.
stage_on() { [[ " $E2E_STAGES " == *" $1 "* ]]; }

# ---------------------------------------------------------------------- run
images_generate
upstream_start
upstream_push
mirror_start
mirror_checks

READY=()
for client in "${CLIENTS[@]}"; do
    step "$client: setup, then cold pulls from an empty cache (upstream up)"
    if "${client}_setup"; then
        READY+=("$client")
        stage_on clients || continue
        mirror_empty_cache
        "${client}_cold"
    else
        fail "$client: setup failed, so its pulls were not tried (reason above)"
    fi
done
if stage_on clients; then
    skopeo_direct
    mirror_facts_upstream_up
    mirror_wrong_upstream_ca
    offline_seed

    upstream_stop
    for client in "${READY[@]}"; do
        step "$client: warm pulls by digest (upstream down, removed locally first)"
        "${client}_warm"
    done
    cache_commands
    mirror_facts_upstream_down
    offline_serve
    upstream_restart
    private_start
    private_mirror_start
    private_podman
    token_skopeo
    token_ctr
    token_docker
    token_anonymous_docker
    isolation_matrix
    private_docker
fi
if stage_on hosted; then
    hosted_start
    hosted_push
    hosted_pull_all
    hosted_referrers
    hosted_delete
    hosted_gc
fi
if stage_on fleet; then
    fleet_start
    fleet_cold
    fleet_kill
    fleet_warm
fi
if stage_on bucket; then
    bucket_start
    bucket_cold
    bucket_kill_garage
    fleet_kill bucketkill
    bucket_restart
    bucket_airgap
    bucket_hosted
    bucket_stop
fi

# ---------------------------------------------------------------------- result
step "result"
for f in "${NOTES[@]}"; do info "note: $f"; done
for f in "${FAILURES[@]}"; do info "failed: $f"; done
FINISHED=1 # cleanup (trap EXIT) stops everything, prints the count, sets the exit status
