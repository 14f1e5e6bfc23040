# Stage: hosted repositories, pushed by real clients (sourced by run.sh).
#
# A regmirror of its own with --hosted-namespace site.lan and an empty data dir, on [::1]:443
# with the main mirror's certificate, so clients name it as plain regmirror.test (the CA in the
# private /etc/docker/certs.d/regmirror.test/ and /etc/containers/certs.d/regmirror.test/). It
# mirrors the upstream too, and must never ask the upstream about site.lan/ names. Fresh images
# from mkimages.py (no client has their blobs) are pushed into the hosted namespace:
#   docker   `docker load` of a docker-archive (skopeo from the ociimg layout), then
#            docker push regmirror.test/site.lan/gallery/ui:v1
#   podman   `podman load` of an oci-archive (the tool layout), then
#            podman push regmirror.test/site.lan/gallery/api:v1
#   skopeo   copy --all of the multi layout (an OCI index) to
#            docker://regmirror.test/site.lan/base/multi:1 (the index byte for byte)
# Each push must show in the mirror's log as a manifest PUT answered 201, and the manifest the
# mirror then serves must hash to the digest the client printed.
# Stages hosted_pull.sh and hosted_api.sh go on from here.
# Sets: HOSTED (regmirror.test), HDATA, HOSTED_PID, HOSTED_KEYS, HOSTED_REPO, HOSTED_TAG,
#       HOSTED_PUSHED (the digest each push printed), HOSTED_IMAGES (fresh images' summary.json);
#       MIRROR_LOG becomes the hosted mirror's log.

HOSTED=$MIRROR_NAME
HOSTED_NS=site.lan
HOSTED_KEYS=(ui api multi)
declare -A HOSTED_REPO=([ui]=site.lan/gallery/ui [api]=site.lan/gallery/api [multi]=site.lan/base/multi)
declare -A HOSTED_TAG=([ui]=v1 [api]=v1 [multi]=1)
# The mkimages.py image each hosted one is made from.
declare -A HOSTED_SOURCE=([ui]=ociimg [api]=tool [multi]=multi)
declare -A HOSTED_PUSHED=()

# hosted_ref KEY [DIGEST]: KEY's reference, by tag or by DIGEST.
hosted_ref() {
    if [[ -n ${2:-} ]]; then
        printf '%s/%s@%s\n' "$HOSTED" "${HOSTED_REPO[$1]}" "$2"
    else
        printf '%s/%s:%s\n' "$HOSTED" "${HOSTED_REPO[$1]}" "${HOSTED_TAG[$1]}"
    fi
}

# hosted_ready CLIENT WHAT: whether CLIENT's setup worked; a failure of WHAT when not.
hosted_ready() {
    [[ " ${READY[*]} " == *" $1 "* ]] && return 0
    fail "hosted: $2 ($1 setup failed)"
    return 1
}

hosted_start() {
    step "hosted repositories: regmirror --hosted-namespace $HOSTED_NS on [::1]:443 ($HOSTED)"
    local dir="$TMP/hosted"
    HDATA="$dir/data"
    HOSTED_IMAGES="$dir/images/summary.json"
    mkdir -p "$dir"
    python3 "$HERE/mkimages.py" "$dir/images" >/dev/null || die "mkimages.py for the hosted images failed"
    MIRROR_LOG="$dir/mirror.log"
    LOG_FILES+=("$MIRROR_LOG")
    start_bg regmirror-hosted "$MIRROR_LOG" env NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
        "$REGMIRROR_BIN" serve --listen "[::1]:443" --data-dir "$HDATA" --hosted-namespace "$HOSTED_NS" \
        --upstream "$UP_URL" --upstream-ca "$UP_CA" \
        --tls-cert "$MDATA/certs/server.crt" --tls-key "$MDATA/certs/server.key"
    HOSTED_PID=$BG_PID
    wait_http regmirror-hosted "$HOSTED_PID" "https://$HOSTED/v2/" --cacert "$CACERT"
    # Only into the private bind mounts the clients' setups made, never the machine's /etc.
    if [[ -n ${CONTAINERS_ENV+set} ]]; then
        mkdir -p "/etc/containers/certs.d/$HOSTED" && cp "$CACERT" "/etc/containers/certs.d/$HOSTED/ca.crt"
    fi
    if [[ " ${READY[*]} " == *" docker "* ]]; then
        mkdir -p "/etc/docker/certs.d/$HOSTED" && cp "$CACERT" "/etc/docker/certs.d/$HOSTED/ca.crt"
    fi
    HOSTED_CTR_HOSTS="$dir/ctr-hosts"
    mkdir -p "$HOSTED_CTR_HOSTS/$HOSTED" && cp "$CACERT" "$HOSTED_CTR_HOSTS/$HOSTED/ca.crt"
    # The CA for the server as well: after a 404 from the [host] entry containerd tries the server,
    # and without it would report an unknown authority instead. (Without a [host] table,
    # containerd 1.6 logs "invalid `host` tree".)
    cat >"$HOSTED_CTR_HOSTS/$HOSTED/hosts.toml" <<EOF
server = "https://$HOSTED"
ca = "$HOSTED_CTR_HOSTS/$HOSTED/ca.crt"

[host."https://$HOSTED"]
  capabilities = ["pull", "resolve"]
  ca = "$HOSTED_CTR_HOSTS/$HOSTED/ca.crt"
EOF
    hosted_not_upstream
}

# hosted_not_upstream: a name in the hosted namespace that nobody pushed is 404 at once, and the
# upstream never hears of it; a push to a mirrored repository is still refused.
hosted_not_upstream() {
    local code up_mark body="$TMP/hosted/absent.json"
    up_mark=$(upstream_mark)
    code=$("${CURL[@]}" -o "$body" -w '%{http_code}' -H "Accept: $ACCEPT_ALL" \
        "https://$HOSTED/v2/$HOSTED_NS/gallery/absent/manifests/v1" || true)
    if [[ $code == 404 ]] && grep -q MANIFEST_UNKNOWN "$body"; then
        pass "GET /v2/$HOSTED_NS/gallery/absent/manifests/v1 (never pushed): 404 MANIFEST_UNKNOWN"
    else
        fail "GET /v2/$HOSTED_NS/gallery/absent/manifests/v1 (never pushed): 404 MANIFEST_UNKNOWN" \
            "status $code: $(head -c 300 "$body")"
    fi
    if tail -n +"$((up_mark + 1))" "$UPSTREAM_LOG" | grep -qE "absent|$HOSTED_NS"; then
        fail "the upstream never hears of $HOSTED_NS/ names" "$(tail -n +"$((up_mark + 1))" "$UPSTREAM_LOG" | tail -n 3)"
    else
        pass "the upstream never hears of $HOSTED_NS/ names"
    fi
    code=$("${CURL[@]}" --http1.1 -o "$body" -w '%{http_code}' -X PUT \
        -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary '{}' \
        "https://$HOSTED/v2/library/tiny/manifests/e2e-push" || true)
    if [[ $code == 405 ]] && grep -q UNSUPPORTED "$body"; then
        pass "with a hosted namespace, a push to mirrored library/tiny is still 405 UNSUPPORTED"
    else
        fail "with a hosted namespace, a push to mirrored library/tiny is still 405 UNSUPPORTED" \
            "status $code: $(head -c 300 "$body")"
    fi
}

hosted_push() {
    hosted_docker_push
    hosted_podman_push
    hosted_skopeo_push
    local key
    for key in "${HOSTED_KEYS[@]}"; do
        [[ -n ${HOSTED_PUSHED[$key]:-} ]] && hosted_manifest_check "$key"
    done
    hosted_listings
}

hosted_docker_push() {
    step "hosted: docker load of a generated docker-archive, docker push $(hosted_ref ui)"
    hosted_ready docker "docker push" || return 0
    local dir="$TMP/hosted" ref mark
    ref=$(hosted_ref ui)
    setup_ok "skopeo: the ociimg layout as a docker-archive named $ref" "${SKOPEO[@]}" copy -q \
        "oci:$dir/images/ociimg:1" "docker-archive:$dir/ui.tar:$ref" || return 0
    setup_ok "docker load -i ui.tar" "${DOCKER[@]}" load -i "$dir/ui.tar" || return 0
    expect_eq "docker load: image ID of $ref is the generated config" "$(docker_id "$ref" 2>&1)" \
        "$(hosted_want_config ui)"
    mark=$(log_mark)
    hosted_pushed ui "docker push $ref" "$mark" "$dir/docker-push.log" "${DOCKER[@]}" push "$ref"
}

hosted_podman_push() {
    step "hosted: podman load of a generated oci-archive, podman push $(hosted_ref api)"
    hosted_ready podman "podman push" || return 0
    local dir="$TMP/hosted" ref mark
    ref=$(hosted_ref api)
    setup_ok "skopeo: the tool layout as an oci-archive named $ref" "${SKOPEO[@]}" copy -q \
        "oci:$dir/images/tool:latest" "oci-archive:$dir/api.tar:$ref" || return 0
    setup_ok "podman load -i api.tar" "${PODMAN[@]}" load -i "$dir/api.tar" || return 0
    expect_eq "podman load: image ID of $ref is the generated config" "$(podman_id "$ref" 2>&1)" \
        "$(hosted_want_config api)"
    mark=$(log_mark)
    rm -f "$dir/api.digest"
    hosted_pushed api "podman push $ref" "$mark" "$dir/podman-push.log" \
        "${PODMAN[@]}" push --digestfile "$dir/api.digest" "$ref"
}

hosted_skopeo_push() {
    step "hosted: skopeo copy --all of an OCI index to docker://$(hosted_ref multi)"
    local dir="$TMP/hosted" ref mark child
    ref=$(hosted_ref multi)
    mark=$(log_mark)
    rm -f "$dir/multi.digest"
    hosted_pushed multi "skopeo copy --all oci:multi:1 docker://$ref" "$mark" "$dir/skopeo-push.log" \
        "${SKOPEO[@]}" copy --all --digestfile "$dir/multi.digest" --dest-cert-dir "$CA_ONLY_DIR" \
        "oci:$dir/images/multi:1" "docker://$ref"
    [[ -n ${HOSTED_PUSHED[multi]:-} ]] || return 0
    expect_eq "skopeo copy --all: the index pushed is the generated one, byte for byte" \
        "${HOSTED_PUSHED[multi]}" "$(hosted_summary multi manifest)"
    for child in $(hosted_summary multi children); do
        compare_raw "skopeo inspect --raw $ref's child ${child:0:19}… hashes to its digest" \
            "$HOSTED/${HOSTED_REPO[multi]}@$child" "" "$child"
    done
}

# hosted_pushed KEY WHAT MARK LOG CMD...: run the push CMD; record the digest it printed (docker:
# "v1: digest: sha256:… size: …"; podman and skopeo: their --digestfile) in HOSTED_PUSHED[KEY];
# check that the mirror's log shows the manifest PUT answered 201.
hosted_pushed() {
    local key=$1 what=$2 mark=$3 log=$4 digest
    shift 4
    if ! run_logged "$log" "$@"; then
        fail "$what"
        hosted_log_tail "$mark"
        return 0
    fi
    case $key in
        ui) digest=$(grep -oE 'digest: sha256:[0-9a-f]{64}' "$log" | tail -n1 | cut -d' ' -f2) ;;
        *) digest=$(cat "$TMP/hosted/$key.digest" 2>/dev/null) ;;
    esac
    if [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]]; then
        HOSTED_PUSHED[$key]=$digest
        pass "$what: pushed $digest"
        info "transcript: $what -> $digest"
    else
        fail "$what: the client names the digest it pushed" "got '$digest'"
    fi
    if log_since "$mark" | grep -qE " method=PUT path=/v2/${HOSTED_REPO[$key]}/manifests/${HOSTED_TAG[$key]} status=201 "; then
        pass "$what: mirror log shows PUT /v2/${HOSTED_REPO[$key]}/manifests/${HOSTED_TAG[$key]} answered 201"
    else
        fail "$what: mirror log shows PUT /v2/${HOSTED_REPO[$key]}/manifests/${HOSTED_TAG[$key]} answered 201"
        hosted_log_tail "$mark"
    fi
}

# hosted_log_tail MARK: the mirror's request lines after MARK and its warnings, for a failure.
hosted_log_tail() {
    log_since "$1" | sed 's/^.*request /     | /' | tail -n 12
    tail -n +"$(($1 + 1))" "$MIRROR_LOG" | grep -E ' (WARN|ERROR) ' | tail -n 5 | sed 's/^/     | /' || true
}

# hosted_manifest_check KEY: the manifest the mirror serves by tag and by digest hashes to the
# pushed digest, and its config (for an image) is the generated one the client loaded.
hosted_manifest_check() {
    local key=$1 digest=${HOSTED_PUSHED[$1]} body="$TMP/hosted/$1.manifest" code by
    for by in "${HOSTED_TAG[$key]}" "$digest"; do
        code=$("${CURL[@]}" -o "$body" -w '%{http_code}' -H "Accept: $ACCEPT_ALL" \
            "https://$HOSTED/v2/${HOSTED_REPO[$key]}/manifests/$by" || true)
        expect_eq "GET /v2/${HOSTED_REPO[$key]}/manifests/${by:0:19}: status $code, body hashes to the pushed digest" \
            "$code sha256:$(sha256_of "$body")" "200 $digest"
    done
    head_check "HEAD /v2/${HOSTED_REPO[$key]}/manifests/${HOSTED_TAG[$key]}" \
        "https://$HOSTED/v2/${HOSTED_REPO[$key]}/manifests/${HOSTED_TAG[$key]}" "$digest" "$(stat -c %s "$body")"
    [[ $key == multi ]] && return 0
    expect_eq "${HOSTED_REPO[$key]}: the pushed manifest's config is the generated one" \
        "$(manifest_field "$body" config)" "$(hosted_want_config "$key")"
}

# hosted_listings: tags/list of each repository and the catalog of hosted repositories.
hosted_listings() {
    local key body="$TMP/hosted/list.json" code got
    for key in "${HOSTED_KEYS[@]}"; do
        code=$("${CURL[@]}" -o "$body" -w '%{http_code}' "https://$HOSTED/v2/${HOSTED_REPO[$key]}/tags/list" || true)
        got=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["name"], d["tags"])' \
            "$body" 2>&1 || true)
        expect_eq "GET /v2/${HOSTED_REPO[$key]}/tags/list" "$code $got" "200 ${HOSTED_REPO[$key]} ['${HOSTED_TAG[$key]}']"
    done
    code=$("${CURL[@]}" -o "$body" -w '%{http_code}' "https://$HOSTED/v2/_catalog" || true)
    got=$(python3 -c 'import json, sys; print(" ".join(sorted(json.load(open(sys.argv[1]))["repositories"])))' \
        "$body" 2>&1 || true)
    expect_eq "GET /v2/_catalog lists the three hosted repositories" "$code $got" \
        "200 $(printf '%s\n' "${HOSTED_REPO[@]}" | sort | tr '\n' ' ' | sed 's/ $//')"
}

# hosted_summary KEY FIELD: summary_field of the fresh image KEY is made from.
hosted_summary() { SUMMARY=$HOSTED_IMAGES summary_field "${HOSTED_SOURCE[$1]}" "$2"; }

# hosted_want_config KEY: the config digest (image ID) a client on this host ends up with.
hosted_want_config() { SUMMARY=$HOSTED_IMAGES platform_image "${HOSTED_SOURCE[$1]}" "$HOST_ARCH" | cut -d' ' -f2; }

# manifest_field FILE FIELD: from an image manifest, "config" (its digest) or "blobs" (config and
# layers); from an index, "children" (the child manifests' digests).
manifest_field() {
    python3 - "$1" "$2" <<'EOF' 2>&1
import json, sys
m = json.load(open(sys.argv[1]))
if sys.argv[2] == "config":
    print(m["config"]["digest"])
elif sys.argv[2] == "blobs":
    print(" ".join(d["digest"] for d in [m["config"]] + m["layers"]))
else:
    print(" ".join(d["digest"] for d in m["manifests"]))
EOF
}
