# Stage: hosted repositories pulled back by every client (sourced by run.sh; after hosted.sh).
#
# Each pushed image (ui, api, multi) is removed from the client, pulled by tag, removed again and
# pulled by digest, with dockerd, podman, skopeo (copy --all to dir:) and ctr (--hosts-dir with a
# hosts.toml naming https://regmirror.test). What the client stored must carry the pushed digest:
#   docker, podman  RepoDigests holds regmirror.test/<repo>@<pushed digest>, and the image ID is
#                   the generated config for this host's architecture
#   skopeo          the manifest.json it wrote hashes to the pushed digest, every blob file to its
#                   name, and the config and layers this host needs are there
#   ctr             the image's target is the pushed digest
# and the mirror's log must show that config and those layers answered 200. Then skopeo copies api
# to site.lan/gallery/api-copy, mounting its layers across repositories.
# Also used by hosted_api.sh: hosted_rm, hosted_has, hosted_client_pull, hosted_pull.

HOSTED_CLIENTS=(docker podman skopeo containerd)

hosted_pull_all() {
    local key client by
    for key in "${HOSTED_KEYS[@]}"; do
        step "hosted: $(hosted_ref "$key") pulled back by each client, by tag and by digest"
        if [[ -z ${HOSTED_PUSHED[$key]:-} ]]; then
            fail "hosted: pulls of $(hosted_ref "$key") (its push failed)"
            continue
        fi
        for client in "${HOSTED_CLIENTS[@]}"; do
            [[ $client == skopeo ]] || hosted_ready "$client" "$client pulls of $(hosted_ref "$key")" || continue
            for by in tag digest; do hosted_pull "$client" "$key" "$by"; done
        done
    done
    hosted_mount
}

# hosted_mount: skopeo copy of api to another hosted repository. skopeo has just read api's layers
# from site.lan/gallery/api, which its blob info cache remembers, so it asks to mount each
# (POST ...?mount=<digest>&from=site.lan/gallery/api) rather than upload it: 201 every time.
hosted_mount() {
    step "hosted: skopeo copy between hosted repositories mounts the layers"
    [[ -n ${HOSTED_PUSHED[api]:-} ]] || { fail "hosted: cross-repository mount (the push of api failed)"; return; }
    local from=${HOSTED_REPO[api]} to="${HOSTED_REPO[api]}-copy" what mark layers d missing="" digest
    what="skopeo copy docker://$(hosted_ref api) docker://$HOSTED/$to:v1"
    mark=$(log_mark)
    rm -f "$TMP/hosted/copy.digest"
    if run_logged "$TMP/hosted/skopeo-copy.log" "${SKOPEO[@]}" copy --digestfile "$TMP/hosted/copy.digest" \
        --src-cert-dir "$CA_ONLY_DIR" --dest-cert-dir "$CA_ONLY_DIR" "docker://$(hosted_ref api)" "docker://$HOSTED/$to:v1"; then
        pass "$what"
    else
        fail "$what"
        hosted_log_tail "$mark"
        return 0
    fi
    digest=$(cat "$TMP/hosted/copy.digest" 2>/dev/null || true)
    expect_eq "$what: the manifest copied is api's, byte for byte" "$digest" "${HOSTED_PUSHED[api]}"
    info "transcript: $what -> $digest"
    read -r -a layers <<<"$(hosted_host_blobs api)"
    for d in "${layers[@]:1}"; do
        # containers/image escapes the query: mount=sha256%3A…&from=site.lan%2Fgallery%2Fapi.
        log_since "$mark" | grep -qE " method=POST path=/v2/$to/blobs/uploads/\?[^ ]*mount=sha256(:|%3A)${d#sha256:}[^ ]* status=201 " \
            || missing+=" ${d:0:19}…"
    done
    if [[ -z $missing ]]; then
        pass "$what: each of its $((${#layers[@]} - 1)) layers mounted from $from (POST ?mount=&from= answered 201)"
    else
        fail "$what: each layer mounted from $from (POST ?mount=&from= answered 201)" "not mounted:$missing"
        hosted_log_tail "$mark"
    fi
}

# hosted_host_blobs KEY: the config and layer digests of KEY's image for this host, as pushed.
hosted_host_blobs() {
    if [[ $1 == multi ]]; then
        SUMMARY=$HOSTED_IMAGES platform_image multi "$HOST_ARCH" | cut -d' ' -f2-
    else
        manifest_field "$TMP/hosted/$1.manifest" blobs
    fi
}

# hosted_pull CLIENT KEY tag|digest: remove KEY's image from CLIENT, pull it, check what was stored
# and what the mirror served.
hosted_pull() {
    local client=$1 key=$2 by=$3 digest=${HOSTED_PUSHED[$2]} ref what mark blobs
    ref=$(hosted_ref "$key")
    [[ $by == tag ]] || ref=$(hosted_ref "$key" "$digest")
    hosted_rm "$client" "$key"
    setup_ok "$client: $(hosted_ref "$key") removed locally" not hosted_has "$client" "$key" || return 0
    what="hosted: $client pull ${ref:0:60}"
    mark=$(log_mark)
    if run_logged "$TMP/hosted/$client-pull.log" hosted_client_pull "$client" "$ref"; then
        pass "$what"
        expect_eq "$what: stored image" "$(hosted_stored "$client" "$key" "$ref" 2>&1)" \
            "$(hosted_want_stored "$client" "$key")"
        info "transcript: $client pull $ref -> $(hosted_pulled_digest "$client" "$key" "$ref" 2>&1)"
    else
        fail "$what"
        hosted_log_tail "$mark"
        return 0
    fi
    read -r -a blobs <<<"$(hosted_host_blobs "$key")"
    mirror_served "$what" "$mark" "${HOSTED_REPO[$key]}" "${blobs[@]/#/blobs/}"
}

# hosted_skopeo_dir REF: where skopeo copies REF to.
hosted_skopeo_dir() { printf '%s/hosted/skopeo/%s\n' "$TMP" "$(tr '/:@' '___' <<<"$1")"; }

hosted_client_pull() {
    local client=$1 ref=$2 dir
    case $client in
        docker) "${DOCKER[@]}" pull "$ref" ;;
        podman) "${PODMAN[@]}" pull "$ref" ;;
        containerd) "${CTR[@]}" images pull --hosts-dir "$HOSTED_CTR_HOSTS" "$ref" ;;
        skopeo)
            dir=$(hosted_skopeo_dir "$ref")
            rm -rf "$dir" && mkdir -p "$(dirname "$dir")"
            "${SKOPEO[@]}" copy -q --all --src-cert-dir "$CA_ONLY_DIR" "docker://$ref" "dir:$dir"
            ;;
    esac
}

# hosted_rm CLIENT KEY: remove KEY's image, by tag and by digest, from CLIENT (what is absent is
# no error).
hosted_rm() {
    local client=$1 key=$2 ref
    for ref in "$(hosted_ref "$key")" "$(hosted_ref "$key" "${HOSTED_PUSHED[$key]}")"; do
        case $client in
            docker) "${DOCKER[@]}" rmi "$ref" ;;
            podman) "${PODMAN[@]}" rmi "$ref" ;;
            containerd) "${CTR[@]}" images rm --sync "$ref" ;;
            skopeo) rm -rf "$(hosted_skopeo_dir "$ref")" ;;
        esac >/dev/null 2>&1 || true
    done
}

# hosted_has CLIENT KEY: whether CLIENT holds KEY's image by tag or by digest.
hosted_has() {
    local client=$1 key=$2 ref
    for ref in "$(hosted_ref "$key")" "$(hosted_ref "$key" "${HOSTED_PUSHED[$key]}")"; do
        case $client in
            docker) docker_id "$ref" ;;
            podman) podman_id "$ref" ;;
            containerd) containerd_id "$ref" ;;
            skopeo) test -e "$(hosted_skopeo_dir "$ref")" ;;
        esac >/dev/null 2>&1 && return 0
    done
    return 1
}

# hosted_pulled_digest CLIENT KEY REF: the digest CLIENT recorded for what it pulled, as one line
# for the transcript.
hosted_pulled_digest() {
    local client=$1 key=$2 ref=$3
    case $client in
        docker) "${DOCKER[@]}" image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' "$ref" ;;
        podman) "${PODMAN[@]}" image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' "$ref" ;;
        containerd) containerd_id "$ref" ;;
        skopeo) printf 'sha256:%s\n' "$(sha256_of "$(hosted_skopeo_dir "$ref")/manifest.json")" ;;
    esac
}

# hosted_stored CLIENT KEY REF: what identifies the image CLIENT stored, as hosted_want_stored
# prints it when all is well.
hosted_stored() {
    local client=$1 key=$2 ref=$3 want_ref digests
    want_ref="$HOSTED/${HOSTED_REPO[$key]}@${HOSTED_PUSHED[$key]}"
    case $client in
        docker | podman)
            digests=" $(hosted_pulled_digest "$client" "$key" "$ref") "
            [[ $digests == *" $want_ref "* ]] || want_ref="RepoDigests:$digests"
            printf 'image ID %s, %s\n' "$("${client}_id" "$ref")" "$want_ref"
            ;;
        containerd) printf 'target %s\n' "$(containerd_id "$ref")" ;;
        skopeo) hosted_skopeo_verify "$key" "$(hosted_skopeo_dir "$ref")" ;;
    esac
}

hosted_want_stored() {
    local client=$1 key=$2
    case $client in
        docker | podman)
            printf 'image ID %s, %s\n' "$(hosted_want_config "$key")" \
                "$HOSTED/${HOSTED_REPO[$key]}@${HOSTED_PUSHED[$key]}"
            ;;
        containerd) printf 'target %s\n' "${HOSTED_PUSHED[$key]}" ;;
        skopeo) printf 'manifest %s; blobs for %s: present; bad: none\n' "${HOSTED_PUSHED[$key]}" "$HOST_ARCH" ;;
    esac
}

# hosted_skopeo_verify KEY DIR: skopeo's dir: copy of KEY, summed up as hosted_want_stored says.
hosted_skopeo_verify() {
    local key=$1 dir=$2 f d bad="" missing=""
    for f in "$dir"/*; do
        d=$(basename "$f")
        d=${d%.manifest.json}
        [[ $d =~ ^[0-9a-f]{64}$ ]] || continue
        [[ $(sha256_of "$f") == "$d" ]] || bad+=" sha256:$d"
    done
    for d in $(hosted_host_blobs "$key"); do
        [[ -f $dir/${d#sha256:} ]] || missing+=" $d"
    done
    printf 'manifest sha256:%s; blobs for %s: %s; bad:%s\n' "$(sha256_of "$dir/manifest.json" 2>/dev/null)" \
        "$HOST_ARCH" "${missing:-present}" "${bad:- none}"
}
