# Stage: skopeo (containers/image), sourced by run.sh.
#
# Cold: docker://docker.io/library/ociimg:1 with a registries.conf mirror stanza and the CA in
# the private /etc/containers/certs.d/regmirror.test:PORT/ (shared with podman).
# Direct (skopeo_direct, after every client's cold run; it also fills the cache for the warm
# pulls): every test image by the mirror's own name (docker://regmirror.test:PORT/tiny:1,
# regmirror's CA via --src-cert-dir), copied to dir: and compared byte for byte with the
# generated image; child manifests of the index checked with inspect --raw.

# containers_config: registries.conf with the mirror stanza, and the CA in a private
# /etc/containers/certs.d. Sets REGISTRIES_CONF and CONTAINERS_ENV (environment for
# podman and skopeo). podman reads CONTAINERS_REGISTRIES_CONF itself; skopeo 1.9
# (containers/image 5.23) ignores it and takes the hidden --registries-conf flag.
containers_config() {
    [[ -z ${CONTAINERS_ENV+set} ]] || return 0
    # A private copy of /etc/containers (policy.json, storage defaults) without the
    # machine's registries.conf.d drop-ins, which would apply on top of ours.
    private_dir /etc/containers copy
    rm -f /etc/containers/registries.conf.d/*
    mkdir -p "/etc/containers/certs.d/$M" && cp "$CACERT" "/etc/containers/certs.d/$M/ca.crt" || return 1
    REGISTRIES_CONF="$TMP/registries.conf"
    cat >"$REGISTRIES_CONF" <<EOF
unqualified-search-registries = []

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "$M"
EOF
    mkdir -p "$TMP/containers-tmp" "$TMP/containers-home"
    # HOME: no per-user registries.conf.d, containers.conf or credentials of this machine.
    CONTAINERS_ENV=(CONTAINERS_REGISTRIES_CONF="$REGISTRIES_CONF" TMPDIR="$TMP/containers-tmp"
        HOME="$TMP/containers-home")
    info "registries.conf ($REGISTRIES_CONF):"
    sed 's/^/     | /' "$REGISTRIES_CONF"
    info "CA: /etc/containers/certs.d/$M/ca.crt (private bind mount)"
}

SKOPEO=(timeout 120 skopeo --insecure-policy)

# verify_dir KEY DIR WHAT: a skopeo dir: copy matches the summary byte for byte.
verify_dir() {
    local key=$1 dir=$2 what=$3 want f absent="" extra="" bad="" all_expected
    expect_eq "$what: manifest digest" "sha256:$(sha256_of "$dir/manifest.json")" \
        "$(summary_field "$key" manifest)"
    # Children of an index are stored as <hex>.manifest.json.
    for want in $(summary_field "$key" children); do
        f="$dir/${want#sha256:}.manifest.json"
        if [[ ! -f $f ]]; then absent+=" $want"
        elif [[ "sha256:$(sha256_of "$f")" != "$want" ]]; then bad+=" $want"; fi
    done
    for want in $(summary_field "$key" blobs); do
        f="$dir/${want#sha256:}"
        if [[ ! -f $f ]]; then absent+=" $want"
        elif [[ "sha256:$(sha256_of "$f")" != "$want" ]]; then bad+=" $want"; fi
    done
    all_expected=" $(summary_field "$key" blobs) "
    for f in "$dir"/*; do
        f=$(basename "$f")
        [[ $f =~ ^[0-9a-f]{64}$ ]] || continue
        [[ $all_expected == *" sha256:$f "* ]] || extra+=" sha256:$f"
    done
    if [[ -z $absent$extra$bad ]]; then
        pass "$what: all child manifests and blobs byte-identical"
    else
        fail "$what: blobs differ" "missing:${absent:- none} extra:${extra:- none} bad digest:${bad:- none}"
    fi
}

# compare_raw WHAT MIRROR_REF UPSTREAM_REF [WANT_DIGEST]: `skopeo inspect --raw`
# through the mirror equals the upstream's (or WANT_DIGEST when UPSTREAM_REF is "").
compare_raw() {
    local what=$1 mref=$2 uref=$3 out
    out="$TMP/raw.$RANDOM"
    if ! "${SKOPEO[@]}" inspect --cert-dir "$CA_ONLY_DIR" --raw "docker://$mref" >"$out.m" 2>"$out.err"; then
        fail "$what" "skopeo inspect --raw docker://$mref failed: $(tail -n 3 "$out.err")"
        return
    fi
    if [[ -n $uref ]]; then
        "${SKOPEO[@]}" inspect --cert-dir "$UP_CA_DIR" --raw "docker://$uref" >"$out.u" 2>>"$out.err" || true
        expect_eq "$what" "$(sha256_of "$out.m")" "$(sha256_of "$out.u")"
    else
        expect_eq "$what" "sha256:$(sha256_of "$out.m")" "$4"
    fi
}

# skopeo_copy WHAT KEY SRC DEST_DIR [ARGS...]: skopeo copy --all SRC dir:DEST_DIR, verified.
skopeo_copy() {
    local what=$1 key=$2 src=$3 dest=$4; shift 4
    mkdir -p "$(dirname "$dest")"
    if run_logged "$TMP/copy.log" env "${CONTAINERS_ENV[@]}" "${SKOPEO[@]}" \
        --registries-conf "$REGISTRIES_CONF" copy -q --all "$@" "$src" "dir:$dest"; then
        pass "$what: skopeo copy $src"
        verify_dir "$key" "$dest" "$what"
    else
        fail "$what: skopeo copy $src"
    fi
}

skopeo_setup() {
    containers_config
}

skopeo_cold() {
    local key name repo tag digest mark up_mark items blobs
    read -r key name repo tag _ _ digest <<<"$(image_line ociimg)"
    mark=$(log_mark)
    up_mark=$(upstream_mark)
    skopeo_copy "skopeo via registries.conf mirror, cold" "$key" "docker://docker.io/$repo:$tag" \
        "$TMP/skopeo/mirror-cold/$key"
    mapfile -t items < <(pull_items "$key" "($tag|$digest)")
    mapfile -t blobs < <(printf '%s\n' "${items[@]}" | grep '^blobs/')
    mirror_served "skopeo via registries.conf mirror, cold $repo:$tag" "$mark" "$repo" "${items[@]}"
    MS_CACHE=miss mirror_served "skopeo cold $repo:$tag: blobs" "$mark" "$repo" "${blobs[@]}"
    upstream_served_once "skopeo cold $repo:$tag" "$up_mark" "$repo" "${blobs[@]#blobs/}"
}

# skopeo_direct: every image by the mirror's own name, upstream up; byte-identical copies.
skopeo_direct() {
    step "skopeo: every image by the mirror's name (upstream up)"
    local line key name repo tag child
    for line in "${IMAGES[@]}"; do
        read -r key name repo tag _ <<<"$line"
        compare_raw "skopeo direct: inspect --raw $M/$name:$tag equals upstream $repo:$tag" \
            "$M/$name:$tag" "$UP/$repo:$tag"
        for child in $(summary_field "$key" children); do
            compare_raw "skopeo direct: inspect --raw $name@${child:0:19}… equals upstream" \
                "$M/$name@$child" "$UP/$repo@$child"
        done
        skopeo_copy "skopeo direct $name:$tag" "$key" "docker://$M/$name:$tag" \
            "$TMP/skopeo/direct/$key" --src-cert-dir "$CA_ONLY_DIR"
    done
}

skopeo_warm() {
    local line key name repo digest mark items
    for line in "${IMAGES[@]}"; do
        read -r key name repo _ _ _ digest <<<"$line"
        compare_raw "skopeo direct warm: inspect --raw $name@${digest:0:19}…" "$M/$name@$digest" "" "$digest"
        skopeo_copy "skopeo direct warm $name@digest" "$key" "docker://$M/$name@$digest" \
            "$TMP/skopeo/direct-warm/$key" --src-cert-dir "$CA_ONLY_DIR"
    done
    read -r key name repo _ _ _ digest <<<"$(image_line ociimg)"
    mark=$(log_mark)
    skopeo_copy "skopeo via registries.conf mirror, warm" "$key" "docker://docker.io/$repo@$digest" \
        "$TMP/skopeo/mirror-warm/$key"
    mapfile -t items < <(pull_items "$key" "$digest")
    MS_CACHE=hit mirror_served "skopeo via registries.conf mirror, warm $repo@digest" "$mark" "$repo" "${items[@]}"
}
