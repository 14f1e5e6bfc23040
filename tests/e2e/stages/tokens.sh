# Stage: the mirror's own token service, with real clients (sourced by run.sh).
#
# The private mirror of stages/private.sh challenges at /v2/ with
# `Bearer realm="https://regmirror.test:PORT/token"`. Each client logs in the way it does:
#   skopeo      copy --src-creds alice:… (GET /token with Basic)
#   containerd  ctr images pull --user alice:… with a hosts.toml for the mirror
#   dockerd     docker login (a refresh token kept by the CLI), then docker pull; a repository
#               alice has no rule for is 403; docker logout
#   dockerd     anonymous `docker pull tiny:1` through registry-mirrors (an anonymous token
#               for docker.io/library/*, the `anonymous` glob)
# and each pull must show in the mirror's log as a token request answered 200, then the
# manifests and blobs served.

# token_issued WHAT MARK: the mirror's token service answered 200 after MARK.
token_issued() {
    if log_since "$2" | grep -qE " method=(GET|POST) path=/token(\?[^ ]*)? status=200 "; then
        pass "$1: the client fetched a token from the mirror's /token"
    else
        fail "$1: the client fetched a token from the mirror's /token" "$(log_since "$2" | tail -n 5)"
    fi
}

# token_pull_checked WHAT MARK REPO KEY LOG CMD...: run the pull CMD, then check the token and
# the mirror's log for REPO's manifest and fresh private image KEY's config blob.
token_pull_checked() {
    local what=$1 mark=$2 repo=$3 key=$4 log=$5
    shift 5
    if run_logged "$log" "$@"; then
        pass "$what"
    else
        fail "$what"
        return
    fi
    token_issued "$what" "$mark"
    mirror_served "$what" "$mark" "$repo" "manifests/(1|sha256:[0-9a-f]+)" "blobs/$(private_want "$key")"
}

token_skopeo() {
    step "skopeo --src-creds through the mirror's token service"
    local dir="$TMP/private" ref="$PRIV_M/$PRIV_NAME/team/app:1" mark
    mkdir -p "$dir/ca-only" && cp "$PRIV_CA" "$dir/ca-only/ca.crt"
    mark=$(log_mark)
    token_pull_checked "skopeo copy --src-creds alice $ref" "$mark" "$PRIV_NAME/team/app" tiny "$dir/skopeo.log" \
        "${SKOPEO[@]}" copy -q --src-creds "${ALICE[0]}:${ALICE[1]}" --src-cert-dir "$dir/ca-only" \
        "docker://$ref" "dir:$dir/skopeo-app"
    check "skopeo copy --src-creds alice: the image's config is byte-identical" \
        test "sha256:$(sha256_of "$dir/skopeo-app/$(private_want tiny | cut -d: -f2)")" = "$(private_want tiny)"
    mark=$(log_mark)
    if run_logged "$dir/skopeo-wrong.log" "${SKOPEO[@]}" inspect --raw --creds "${ALICE[0]}:wrong" \
        --cert-dir "$dir/ca-only" "docker://$ref"; then
        fail "skopeo with a wrong password is refused" "it succeeded"
    elif log_since "$mark" | grep -qE " path=/token(\?[^ ]*)? status=401 "; then
        pass "skopeo with a wrong password is refused: the token service answered 401"
    else
        fail "skopeo with a wrong password is refused by the token service" "$(log_since "$mark" | tail -n 3)"
    fi
}

token_ctr() {
    step "ctr pull --user through the mirror's token service"
    [[ " ${READY[*]} " == *" containerd "* ]] || { fail "tokens: ctr pull (containerd setup failed)"; return; }
    local hosts="$TMP/private/ctr-hosts" ref="$PRIV_M/$PRIV_NAME/team/app:1" mark
    mkdir -p "$hosts/$PRIV_M" && cp "$PRIV_CA" "$hosts/$PRIV_M/ca.crt"
    cat >"$hosts/$PRIV_M/hosts.toml" <<EOT
server = "https://$PRIV_M"

[host."https://$PRIV_M"]
  capabilities = ["pull", "resolve"]
  ca = "$hosts/$PRIV_M/ca.crt"
EOT
    mark=$(log_mark)
    token_pull_checked "ctr images pull --user alice $ref" "$mark" "$PRIV_NAME/team/app" tiny \
        "$TMP/private/ctr.log" "${CTR[@]}" images pull --hosts-dir "$hosts" --user "${ALICE[0]}:${ALICE[1]}" "$ref"
    # The manifest skopeo copied from the mirror above, byte for byte.
    expect_eq "ctr images pull --user alice: stored image" "$(containerd_id "$ref" 2>&1)" \
        "sha256:$(sha256_of "$TMP/private/skopeo-app/manifest.json")"
}

token_docker() {
    step "docker login to the private mirror, docker pull, docker logout"
    [[ " ${READY[*]} " == *" docker "* ]] || { fail "tokens: docker login (dockerd setup failed)"; return; }
    local ref="$PRIV_M/$PRIV_NAME/team/app:1" mark log="$TMP/private/docker-login.log"
    mkdir -p "/etc/docker/certs.d/$PRIV_M" && cp "$PRIV_CA" "/etc/docker/certs.d/$PRIV_M/ca.crt"
    mark=$(log_mark)
    if run_logged "$log" "${DOCKER[@]}" login --username "${ALICE[0]}" --password-stdin "$PRIV_M" <<<"${ALICE[1]}"; then
        pass "docker login $PRIV_M as alice"
        token_issued "docker login $PRIV_M" "$mark"
    else
        fail "docker login $PRIV_M as alice"
    fi
    mark=$(log_mark)
    token_pull_checked "docker pull $ref after docker login" "$mark" "$PRIV_NAME/team/app" tiny \
        "$TMP/private/docker-pull.log" "${DOCKER[@]}" pull "$ref"
    expect_eq "docker pull $ref: stored image" "$(docker_id "$ref" 2>&1)" "$(private_want tiny)"
    mark=$(log_mark)
    if run_logged "$log" "${DOCKER[@]}" pull "$PRIV_M/$PRIV_NAME/ci/builder:1"; then
        fail "docker pull of ci/builder as alice is denied" "it succeeded"
    else
        mirror_refused "docker pull of ci/builder as alice (logged in)" "$mark" "$PRIV_NAME/ci/builder" 403
    fi
    setup_ok "docker logout $PRIV_M" "${DOCKER[@]}" logout "$PRIV_M"
}

# token_anonymous_docker: dockerd pointed at the private mirror with registry-mirrors pulls
# tiny:1 anonymously: /v2/ challenges, dockerd fetches an anonymous token, and the rules'
# `anonymous` glob (docker.io/library/*) lets it pull.
token_anonymous_docker() {
    step "anonymous docker pull of library/tiny through registry-mirrors and the mirror's token service"
    [[ " ${READY[*]} " == *" docker "* ]] || { fail "tokens: anonymous docker pull (dockerd setup failed)"; return; }
    local what="anonymous docker pull tiny:1 through the private mirror" mark items digest
    docker_use_mirror "$PRIV_M" "$PRIV_CA" || return
    digest=$(summary_field tiny manifest)
    "${DOCKER[@]}" rmi tiny:1 "tiny@$digest" savedimg:1 >/dev/null 2>&1 || true
    setup_ok "docker: tiny:1 removed locally" not docker_id tiny:1 || return
    mark=$(log_mark)
    if run_logged "$TMP/private/docker-anon.log" docker_pull tiny:1; then
        pass "$what"
        expect_eq "$what: stored image" "$(docker_id tiny:1 2>&1)" "$(docker_want tiny)"
    else
        fail "$what"
    fi
    if log_since "$mark" | grep -qE " method=GET path=/token\?[^ ]*scope=repository%3Alibrary%2Ftiny%3Apull[^ ]* status=200 " \
        && ! log_since "$mark" | grep -qE " path=/token\?[^ ]*account="; then
        pass "$what: dockerd fetched an anonymous token for library/tiny"
    else
        fail "$what: dockerd fetched an anonymous token for library/tiny" "$(log_since "$mark" | grep token | tail -n 3)"
    fi
    mapfile -t items < <(pull_items tiny "$digest" | grep '^blobs/')
    mirror_served "$what" "$mark" library/tiny "${items[@]}"
}

# isolation_matrix: the private image alice pulled as team/app, asked for by digest (its
# manifest and every blob) through every other repository and registry, anonymously and as
# alice: refused (401/403/404), never served.
isolation_matrix() {
    step "isolation: team/app's content through every other registry and repository"
    local dir="$TMP/private/skopeo-app" digests=() names d name kind who code answers="" served=""
    [[ -f $dir/manifest.json ]] || { fail "isolation: skopeo's copy of team/app is missing"; return; }
    digests=("manifests/sha256:$(sha256_of "$dir/manifest.json")")
    for d in "$dir"/*; do
        [[ $(basename "$d") =~ ^[0-9a-f]{64}$ ]] && digests+=("blobs/sha256:$(basename "$d")")
    done
    names=(library/tiny library/anything someuser/tool "$PRIV_NAME/ci/builder" "$PRIV_NAME/team/other")
    for name in "${names[@]}"; do
        for kind in "${digests[@]}"; do
            for who in anonymous alice; do
                local auth=()
                [[ $who == anonymous ]] || auth=(-u "${ALICE[0]}:${ALICE[1]}")
                code=$(curl -sS --max-time 20 --cacert "$PRIV_CA" "${auth[@]}" -o /dev/null -w '%{http_code}' \
                    -H "Accept: $ACCEPT_ALL" "https://$PRIV_M/v2/$name/$kind" || true)
                answers+=" $code"
                [[ $code =~ ^40[134]$ ]] || served+=" $who:$name/${kind:0:22}…=$code"
            done
        done
    done
    if [[ -z $served ]]; then
        pass "isolation: ${#names[@]} names × ${#digests[@]} digests × 2 identities, all refused ($(tr ' ' '\n' <<<"$answers" | sort | uniq -c | tr -s ' \n' ' '))"
    else
        fail "isolation: team/app's content is refused through every other name" "served:$served"
    fi
}
