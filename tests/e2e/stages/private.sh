# Stage: a private upstream behind a mirror with access control (sourced by run.sh).
#
# A second docker-registry on 127.0.0.1 with htpasswd auth (`auth: htpasswd:`, a file from
# `htpasswd -B`) holds two freshly generated images (mkimages.py again, so no client has their
# layers yet): team/app:1 (tiny, Docker v2s2) and ci/builder:1 (ociimg, OCI). A second regmirror,
# from a config file (regmirror-private.toml, mode 600 as it holds the upstream's password),
# mirrors it as the `[[registries]]` entry registry.private.test with username/password, and
# has `[access]`: its own htpasswd users, client_certificates = "optional", and rules:
# alice -> registry.private.test/team/*, ci-bot -> registry.private.test/ci/*. Clients name
# the image by path prefix: regmirror.test:PORT/registry.private.test/team/app:1.
#   curl     /v2/ without credentials: 401 with a Basic challenge; alice: 200
#   podman   pull without login fails (401); `podman login` as alice, then the pull succeeds
#   dockerd  with `regmirror cert client ci-bot` as certs.d/regmirror.test:PORT/client.cert|key
#            pulls ci/builder:1 (only ci-bot may); without the certificate it is refused, and
#            team/app (alice's) is denied to ci-bot
# Runs after the other stages; needs podman's and dockerd's setup (READY).
# Sets: PRIV_UP (host:port), PRIV_M (regmirror.test:PORT).

# mirror_refused WHAT MARK REPO STATUS: after MARK the mirror answered STATUS to /v2/ (a client
# that has no credentials to offer stops there) or to a request below /v2/REPO/, and served
# none of REPO's manifests or blobs.
mirror_refused() {
    local what=$1 mark=$2 repo=$3 status=$4 lines
    lines=$(log_since "$mark")
    if grep -qE "path=/v2/($repo/[^ ]*)? status=$status " <<<"$lines" \
        && ! grep -qE "path=/v2/$repo/[^ ]* status=20[06] " <<<"$lines"; then
        pass "$what: refused, the mirror answered $status and served nothing of $repo"
    else
        fail "$what: refused with $status, nothing of $repo served" "$(printf '%s\n' "$lines" | tail -n 5)"
    fi
}

PRIV_NAME=registry.private.test
PRIV_UP_USER=(mirror "up-$RANDOM$RANDOM")
ALICE=(alice "wonderland-$RANDOM")

private_start() {
    step "private upstream: docker-registry with htpasswd auth, seeded with fresh images"
    local dir="$TMP/private"
    mkdir -p "$dir/registry-data"
    python3 "$HERE/mkimages.py" "$dir/images" >/dev/null || die "mkimages.py for the private images failed"
    htpasswd -Bbn "${PRIV_UP_USER[@]}" >"$dir/upstream.htpasswd" 2>/dev/null || die "htpasswd -B failed"
    PRIV_UP="127.0.0.1:$(free_port 127.0.0.1)"
    cat >"$dir/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $dir/registry-data
http:
  addr: $PRIV_UP
auth:
  htpasswd:
    realm: private-registry
    path: $dir/upstream.htpasswd
EOF
    LOG_FILES+=("$dir/registry.log")
    start_bg docker-registry-private "$dir/registry.log" docker-registry serve "$dir/registry.yml"
    wait_http docker-registry-private "$BG_PID" "http://$PRIV_UP/v2/" -u "${PRIV_UP_USER[0]}:${PRIV_UP_USER[1]}"
    local code
    code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://$PRIV_UP/v2/" || true)
    [[ $code == 401 ]] || die "the private upstream does not refuse anonymous clients (status $code)"
    private_push tiny team/app --format v2s2
    private_push ociimg ci/builder
}

# private_push KEY REPO [SKOPEO ARGS]: push fresh image KEY to the private upstream as REPO:1.
private_push() {
    local key=$1 repo=$2; shift 2
    "${SKOPEO[@]}" copy -q --dest-tls-verify=false --dest-creds "${PRIV_UP_USER[0]}:${PRIV_UP_USER[1]}" "$@" \
        "oci:$TMP/private/images/$key:1" "docker://$PRIV_UP/$repo:1" \
        || die "skopeo push of $key to $PRIV_UP/$repo:1 failed"
}

# private_want KEY: the config digest (image ID) of fresh image KEY on this host.
private_want() { SUMMARY="$TMP/private/images/summary.json" platform_image "$1" "$HOST_ARCH" | cut -d' ' -f2; }

private_mirror_start() {
    step "regmirror from a config file: [[registries]] with credentials, [access] with htpasswd, rules, client certificates"
    local dir="$TMP/private" pdata="$TMP/private/mirror-data" port
    run_logged "$dir/cert-init.log" "$REGMIRROR_BIN" cert init --data-dir "$pdata" --hostname "$MIRROR_NAME" \
        || die "regmirror cert init (private mirror) failed"
    check "regmirror cert client ci-bot" "$REGMIRROR_BIN" cert client ci-bot --data-dir "$pdata"
    check "client certificate certs/clients/ci-bot.cert verifies against the mirror's CA" \
        openssl verify -CAfile "$pdata/certs/ca.crt" -purpose sslclient "$pdata/certs/clients/ci-bot.cert"
    htpasswd -Bbn "${ALICE[@]}" >"$dir/mirror.htpasswd" 2>/dev/null || die "htpasswd -B failed"
    port=$(free_port ::1)
    PRIV_M="$MIRROR_NAME:$port"
    PRIV_CONFIG="$dir/regmirror-private.toml"
    (umask 077 && cat >"$PRIV_CONFIG" <<EOF
listen = "[::1]:$port"
data_dir = "$pdata"
upstream = "$UP_URL"
upstream_ca = "$UP_CA"

[[registries]]
name = "$PRIV_NAME"
url = "http://$PRIV_UP"
username = "${PRIV_UP_USER[0]}"
password = "${PRIV_UP_USER[1]}"

[access]
htpasswd = "$dir/mirror.htpasswd"
client_certificates = "optional"
anonymous = ["docker.io/library/*"]

[[access.rules]]
users = ["alice"]
repos = ["$PRIV_NAME/team/*"]

[[access.rules]]
users = ["ci-bot"]
repos = ["$PRIV_NAME/ci/*"]
EOF
    )
    info "config ($PRIV_CONFIG, mode $(stat -c %a "$PRIV_CONFIG")), passwords elided:"
    sed -E 's/^(password = ).*/\1"…"/' "$PRIV_CONFIG" | sed 's/^/     | /'
    MIRROR_LOG="$dir/mirror.log"
    LOG_FILES+=("$MIRROR_LOG")
    start_bg regmirror-private "$MIRROR_LOG" env NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
        "$REGMIRROR_BIN" serve --config "$PRIV_CONFIG"
    PRIV_PID=$BG_PID
    wait_http regmirror-private "$PRIV_PID" "https://$PRIV_M/healthz" --cacert "$pdata/certs/ca.crt"
    PRIV_CA="$pdata/certs/ca.crt"
    if grep -qE 'readable|chmod' "$MIRROR_LOG"; then
        fail "no warning about the config file's mode (it is 600)" "$(grep -E 'readable|chmod' "$MIRROR_LOG")"
    else
        pass "no warning about the config file's mode (it is 600)"
    fi
    if grep -qF "${PRIV_UP_USER[1]}" "$MIRROR_LOG"; then
        fail "the upstream password does not reach the log"
    else
        pass "the upstream password does not reach the log"
    fi

    local code hdr="$dir/v2.hdr"
    code=$(curl -sS --max-time 10 --cacert "$PRIV_CA" -D "$hdr" -o /dev/null -w '%{http_code}' "https://$PRIV_M/v2/" || true)
    local want="www-authenticate: Bearer realm=\"https://$PRIV_M/token\",service=\"regmirror\""
    if [[ $code == 401 ]] && grep -qiF "$want" "$hdr"; then
        pass "GET /v2/ without credentials: 401 with a Bearer challenge naming https://$PRIV_M/token"
    else
        fail "GET /v2/ without credentials: 401 with a Bearer challenge naming https://$PRIV_M/token" \
            "status $code: $(tr -d '\r' <"$hdr" | tr '\n' ' ')"
    fi
    code=$(curl -sS --max-time 10 --cacert "$PRIV_CA" -u "${ALICE[0]}:${ALICE[1]}" -o /dev/null -w '%{http_code}' \
        "https://$PRIV_M/v2/" || true)
    expect_eq "GET /v2/ as alice (htpasswd)" "$code" 200
}

private_podman() {
    step "podman: pull $PRIV_M/$PRIV_NAME/team/app:1 without login (401), then podman login as alice"
    [[ " ${READY[*]} " == *" podman "* ]] || { fail "private: podman pull (podman setup failed)"; return; }
    local dir="$TMP/private" ref="$PRIV_M/$PRIV_NAME/team/app:1" mark
    mkdir -p "/etc/containers/certs.d/$PRIV_M" && cp "$PRIV_CA" "/etc/containers/certs.d/$PRIV_M/ca.crt"
    # Credentials in a file of this run's own, never the machine's auth.json; podman 4.3
    # wants it to exist.
    printf '{}\n' >"$dir/auth.json"
    local podman=(env REGISTRY_AUTH_FILE="$dir/auth.json" "${PODMAN[@]}")
    mark=$(log_mark)
    if run_logged "$dir/podman-anon.log" "${podman[@]}" pull "$ref"; then
        fail "podman pull $ref without login fails" "it succeeded"
    else
        mirror_refused "podman pull $ref without login" "$mark" "$PRIV_NAME/team/app" 401
    fi
    check "podman login $PRIV_M as alice" \
        "${podman[@]}" login --username "${ALICE[0]}" --password "${ALICE[1]}" "$PRIV_M"
    mark=$(log_mark)
    if run_logged "$dir/podman-pull.log" "${podman[@]}" pull "$ref"; then
        pass "podman pull $ref after login"
        expect_eq "podman pull $ref: stored image" "$(podman_id "$ref" 2>&1)" "$(private_want tiny)"
    else
        fail "podman pull $ref after login"
    fi
    mirror_served "podman pull $ref" "$mark" "$PRIV_NAME/team/app" "manifests/1" \
        "blobs/$(private_want tiny)"
    mark=$(log_mark)
    if run_logged "$dir/podman-denied.log" "${podman[@]}" pull "$PRIV_M/$PRIV_NAME/ci/builder:1"; then
        fail "podman pull of ci/builder as alice is denied" "it succeeded"
    else
        mirror_refused "podman pull of ci/builder as alice" "$mark" "$PRIV_NAME/ci/builder" 403
    fi
    # Not counted: a registry name with a port cannot be a path prefix, as a reference's path
    # components admit no ':' (docker/distribution reference grammar); such a registry is
    # reachable through `ns=` (containerd) only.
    "${podman[@]}" pull "$PRIV_M/$PRIV_UP/team/app:1" >"$dir/podman-port.log" 2>&1 || true
    note "podman pull $PRIV_M/$PRIV_UP/team/app:1 (registry name with a port as path prefix): $(tail -n1 "$dir/podman-port.log" | head -c 120)"
}

private_docker() {
    step "dockerd: pull with a client certificate from regmirror cert client (ci-bot)"
    [[ " ${READY[*]} " == *" docker "* ]] || { fail "private: docker pull (dockerd setup failed)"; return; }
    local certs="/etc/docker/certs.d/$PRIV_M" clients="$TMP/private/mirror-data/certs/clients"
    local ref="$PRIV_M/$PRIV_NAME/ci/builder:1" mark log="$TMP/private/docker.log"
    if ! { mkdir -p "$certs" && cp "$PRIV_CA" "$certs/ca.crt"; }; then
        fail "certs.d for $PRIV_M"
        return
    fi
    mark=$(log_mark)
    if run_logged "$log" "${DOCKER[@]}" pull "$ref"; then
        fail "docker pull $ref without a client certificate is refused" "it succeeded"
    else
        mirror_refused "docker pull $ref without a client certificate" "$mark" "$PRIV_NAME/ci/builder" 401
    fi
    cp "$clients/ci-bot.cert" "$certs/client.cert" && cp "$clients/ci-bot.key" "$certs/client.key"
    info "certs.d/$PRIV_M: ca.crt client.cert client.key"
    mark=$(log_mark)
    if run_logged "$log" "${DOCKER[@]}" pull "$ref"; then
        pass "docker pull $ref with client certificate ci-bot"
        expect_eq "docker pull $ref: stored image" "$(docker_id "$ref" 2>&1)" "$(private_want ociimg)"
    else
        fail "docker pull $ref with client certificate ci-bot"
    fi
    mirror_served "docker pull $ref" "$mark" "$PRIV_NAME/ci/builder" "manifests/(1|sha256:[0-9a-f]+)" \
        "blobs/$(private_want ociimg)"
    mark=$(log_mark)
    if run_logged "$log" "${DOCKER[@]}" pull "$PRIV_M/$PRIV_NAME/team/app:1"; then
        fail "docker pull of team/app as ci-bot is denied" "it succeeded"
    else
        mirror_refused "docker pull of team/app as ci-bot" "$mark" "$PRIV_NAME/team/app" 403
        check "docker pull of team/app as ci-bot: the error names ci-bot" grep -q ci-bot "$log"
    fi
}
