# Stage: an air-gapped site (sourced by run.sh).
#
# offline_seed, with the upstream up: `regmirror prefetch` of every test image from the
# upstream into a data directory of its own, `regmirror export` of them to an OCI layout tar
# (and an incremental one --since a first bundle), and skopeo reading the bundle with
# oci-archive:FILE:REF.
# offline_serve, with the upstream stopped: `regmirror import` of the bundle into an empty
# data directory, `regmirror serve --offline` on it (same CA, another port), dockerd pointed
# at it (daemon.json rewritten, SIGHUP), `docker pull` by tag of tiny:1 and
# someuser/tool:latest. Then a `docker save` tarball imported beside the running offline
# mirror and pulled through it under its new name.
# Sets: BUNDLE, OFFLINE_PID.

OFFLINE_IMAGES=(tiny tool)

offline_seed() {
    step "air gap: prefetch from the upstream into a fresh data dir, export bundles"
    local pdata="$TMP/prefetch-data" line name tag names=() out="$TMP/prefetch.out"
    for line in "${IMAGES[@]}"; do
        read -r _ name _ tag _ <<<"$line"
        names+=("$name:$tag")
    done
    local prefetch=("$REGMIRROR_BIN" prefetch --data-dir "$pdata" --upstream "$UP_URL" --upstream-ca "$UP_CA")
    if run_logged "$out" "${prefetch[@]}" "${names[@]}"; then
        pass "regmirror prefetch ${names[*]} (HTTPS upstream, --upstream-ca)"
        sed 's/^/     | /' "$out"
    else
        fail "regmirror prefetch ${names[*]} (HTTPS upstream, --upstream-ca)"
    fi
    # The table's fifth column counts what the run fetched; a second run must fetch nothing.
    if run_logged "$out" "${prefetch[@]}" "${names[@]}"; then
        check "a second prefetch finds everything cached (new = 0)" \
            awk 'NR > 1 && $5 != 0 { bad = 1 } END { exit bad || NR < 2 }' "$out"
    else
        fail "a second prefetch finds everything cached (new = 0)" "the prefetch failed"
    fi

    BUNDLE="$TMP/bundle.tar"
    check "regmirror export --all --output bundle.tar" \
        "$REGMIRROR_BIN" export --data-dir "$pdata" --all --output "$BUNDLE"
    local first="$TMP/bundle-tiny.tar" rest="$TMP/bundle-rest.tar" layer
    run_logged "$TMP/export-first.log" "$REGMIRROR_BIN" export --data-dir "$pdata" --output "$first" tiny:1 || true
    run_logged "$TMP/export-rest.log" "$REGMIRROR_BIN" export --data-dir "$pdata" --all --since "$first" --output "$rest" || true
    layer=$(summary_field tiny blobs | cut -d' ' -f2)
    # Listings in files: `tar | grep -q` fails under pipefail when grep stops reading early.
    tar -tf "$first" >"$TMP/first.list" && tar -tf "$rest" >"$TMP/rest.list" || true
    if grep -q "${layer#sha256:}" "$TMP/first.list" && ! grep -q "${layer#sha256:}" "$TMP/rest.list" \
        && grep -q "$(summary_field ociimg manifest | cut -d: -f2)" "$TMP/rest.list"; then
        pass "export --since bundle-tiny.tar leaves out tiny's blobs and keeps the others'"
    else
        fail "export --since bundle-tiny.tar leaves out tiny's blobs and keeps the others'"
    fi

    local key ref repo
    for key in ociimg tool; do
        read -r _ name repo tag _ <<<"$(image_line "$key")"
        ref="docker.io/$repo:$tag"
        mkdir -p "$TMP/offline"
        if run_logged "$TMP/oci-archive.log" "${SKOPEO[@]}" copy -q "oci-archive:$BUNDLE:$ref" "dir:$TMP/offline/$key"; then
            pass "skopeo copy oci-archive:bundle.tar:$ref"
            verify_dir "$key" "$TMP/offline/$key" "skopeo from the bundle: $ref"
        else
            fail "skopeo copy oci-archive:bundle.tar:$ref"
        fi
    done
    # Not counted: skopeo 1.9 (containers/image 5.23) finds only OCI-typed index.json entries
    # by name, and tiny is a Docker v2 schema 2 image; later versions take both.
    if "${SKOPEO[@]}" copy -q "oci-archive:$BUNDLE:docker.io/library/tiny:1" "dir:$TMP/offline/tiny" \
        >"$TMP/oci-archive.log" 2>&1; then
        note "skopeo reads the Docker-format tiny:1 from the bundle too"
    else
        note "skopeo $(skopeo --version | cut -d' ' -f3) cannot name the Docker-format tiny:1 in the bundle: $(tail -c 120 "$TMP/oci-archive.log")"
    fi
}

offline_serve() {
    step "air gap: import into an empty data dir, serve --offline, docker pull through it"
    local odata="$TMP/offline-data" out="$TMP/import.out"
    if run_logged "$out" "$REGMIRROR_BIN" import --data-dir "$odata" "$BUNDLE"; then
        pass "regmirror import bundle.tar into an empty data dir"
        sed 's/^/     | /' "$out"
    else
        fail "regmirror import bundle.tar into an empty data dir"
        return
    fi
    if run_logged "$out" "$REGMIRROR_BIN" import --data-dir "$odata" "$BUNDLE"; then
        check "importing it again adds nothing" grep -q ': 0 added' "$out"
    else
        fail "importing it again adds nothing" "the import failed"
    fi

    local port o code
    port=$(free_port ::1)
    o="$MIRROR_NAME:$port"
    MIRROR_LOG="$TMP/offline.log"
    LOG_FILES+=("$MIRROR_LOG")
    start_bg regmirror-offline "$MIRROR_LOG" env NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
        "$REGMIRROR_BIN" serve --offline --listen "[::1]:$port" --data-dir "$odata" --upstream "$UP_URL" \
        --tls-cert "$MDATA/certs/server.crt" --tls-key "$MDATA/certs/server.key"
    OFFLINE_PID=$BG_PID
    wait_http regmirror-offline "$OFFLINE_PID" "https://$o/v2/" --cacert "$CACERT"
    code=$("${CURL[@]}" -o "$TMP/offline-miss.json" -w '%{http_code}' "https://$o/v2/library/absent/manifests/1" || true)
    if [[ $code == 404 ]] && grep -q MANIFEST_UNKNOWN "$TMP/offline-miss.json" && grep -q offline "$TMP/offline-miss.json"; then
        pass "offline miss: 404 MANIFEST_UNKNOWN saying the mirror is offline"
    else
        fail "offline miss: 404 MANIFEST_UNKNOWN saying the mirror is offline" "status $code: $(cat "$TMP/offline-miss.json")"
    fi

    local key name tag
    for key in ociimg tool; do
        read -r _ name _ tag _ <<<"$(image_line "$key")"
        skopeo_copy "skopeo from the offline mirror" "$key" "docker://$o/$name:$tag" "$TMP/offline/served-$key" \
            --src-cert-dir "$CA_ONLY_DIR"
    done

    [[ " ${READY[*]} " == *" docker "* ]] || { fail "offline: docker pull (dockerd did not come up)"; return; }
    docker_use_mirror "$o" || return
    for key in "${OFFLINE_IMAGES[@]}"; do offline_pull "$key"; done
    offline_docker_save "$o"
}

# docker_use_mirror HOST:PORT [CA]: point the running dockerd at another mirror (daemon.json
# rewritten, SIGHUP: registry-mirrors is reloadable), with its CA (regmirror's main one unless
# given) in its certs.d.
docker_use_mirror() {
    local dir="$TMP/docker" i
    mkdir -p "/etc/docker/certs.d/$1" && cp "${2:-$CACERT}" "/etc/docker/certs.d/$1/ca.crt"
    printf '{"registry-mirrors": ["https://%s"]}\n' "$1" >"$dir/daemon.json"
    kill -HUP "$(cat "$dir/dockerd.pid")"
    for ((i = 0; i < 50; i++)); do
        "${DOCKER[@]}" info >"$dir/info.txt" 2>&1 || true
        grep -qF "https://$1/" "$dir/info.txt" && { info "setup: dockerd reloaded: mirror https://$1/"; return 0; }
        sleep 0.2
    done
    fail "setup: dockerd reloaded: mirror https://$1/" "docker info does not list it"
    return 1
}

# offline_pull KEY: remove image KEY from dockerd, pull it by tag through the offline mirror,
# check the stored image and that the offline mirror answered every request from its cache.
offline_pull() {
    local key=$1 name repo tag digest what mark items
    read -r _ name repo tag _ _ digest <<<"$(image_line "$key")"
    "${DOCKER[@]}" rmi "$name:$tag" "$name@$digest" >/dev/null 2>&1 || true
    setup_ok "docker: $name:$tag removed locally before the offline pull" not docker_id "$name:$tag" || return 0
    what="docker pull $name:$tag through the offline mirror"
    mark=$(log_mark)
    if run_logged "$TMP/docker.pull.log" docker_pull "$name:$tag"; then
        pass "$what"
        expect_eq "$what: stored image" "$(docker_id "$name:$tag" 2>&1)" "$(docker_want "$key")"
    else
        fail "$what"
    fi
    # dockerd resolves the tag with a HEAD and may then read a manifest it kept from an
    # earlier pull: the tag must be answered (HEAD or GET), every blob fetched.
    if log_since "$mark" | grep -qE " method=(HEAD|GET) path=/v2/$repo/manifests/$tag status=200 "; then
        pass "$what: the offline mirror resolved the tag"
    else
        fail "$what: the offline mirror resolved the tag" "$(log_since "$mark" | tail -n 5)"
    fi
    mapfile -t items < <(pull_items "$key" "$digest" | grep '^blobs/')
    MS_CACHE=hit mirror_served "$what" "$mark" "$repo" "${items[@]}"
}

# offline_docker_save HOST:PORT: `docker save` of tiny:1 under a new name, imported beside the running
# offline mirror, removed from dockerd and pulled back through the mirror.
offline_docker_save() {
    local saved="$TMP/saved.tar" want
    want=$(docker_want tiny)
    if ! run_logged "$TMP/docker.tag.log" "${DOCKER[@]}" tag tiny:1 savedimg:1 \
        || ! run_logged "$TMP/docker.save.log" "${DOCKER[@]}" save -o "$saved" savedimg:1; then
        fail "docker save savedimg:1"
        return
    fi
    info "docker save wrote: $(tar -tf "$saved" | tr '\n' ' ' | cut -c1-300)"
    check "regmirror import of a docker save tarball beside the running offline mirror" \
        "$REGMIRROR_BIN" import --data-dir "$TMP/offline-data" "$saved"
    "${DOCKER[@]}" rmi savedimg:1 tiny:1 >/dev/null 2>&1 || true
    # With no image left that holds tiny's layers, the pull must fetch every blob again.
    setup_ok "docker: savedimg:1 and tiny:1 removed locally" not docker_id savedimg:1 || return 0
    setup_ok "docker: tiny:1 removed locally" not docker_id tiny:1 || return 0
    local what="docker pull savedimg:1 (from docker save) through the offline mirror" mark items
    mark=$(log_mark)
    if run_logged "$TMP/docker.pull.log" docker_pull savedimg:1; then
        pass "$what"
        expect_eq "docker pull savedimg:1: image ID is tiny's config digest" "$(docker_id savedimg:1 2>&1)" "$want"
    else
        fail "$what"
    fi
    # docker save holds the layers uncompressed, so savedimg's blobs are its own: take them
    # from the manifest the mirror serves.
    mapfile -t items < <("${CURL[@]}" -H "Accept: $ACCEPT_ALL" "https://$1/v2/library/savedimg/manifests/1" \
        | python3 -c 'import json, sys; m = json.load(sys.stdin)
for d in [m["config"]] + m["layers"]: print("blobs/" + d["digest"])')
    ((${#items[@]} >= 2)) || fail "$what: the mirror serves savedimg:1's manifest with a config and layers"
    MS_CACHE=hit mirror_served "$what" "$mark" "library/savedimg" "${items[@]}"
}
