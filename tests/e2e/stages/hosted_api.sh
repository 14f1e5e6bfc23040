# Stage: referrers, DELETE and gc of hosted repositories (sourced by run.sh; after hosted_pull.sh).
#
# hosted_referrers: curl attaches two artifacts to api's pushed manifest, their blobs uploaded the
# three ways the distribution spec allows (monolithic POST ?digest=, POST + PATCH with
# Content-Range + PUT ?digest=, POST + PUT ?digest= with the body): an SBOM with an artifactType
# of its own, and a signature without one (its config's media type stands for it). Each manifest
# PUT by digest answers 201 with OCI-Subject; GET /v2/<repo>/referrers/<digest> lists both with
# their artifactType and annotations, ?artifactType= each alone (OCI-Filters-Applied), and an
# unknown subject nothing.
# hosted_delete: DELETE of ui's manifest by digest (202); the tag and the digest then answer 404
# to curl, and docker, podman, skopeo and ctr pulls fail on a 404.
# hosted_gc: `regmirror gc --data-dir DIR --grace 0s` beside the running server reports what it
# freed; ui's manifest, config and layers are gone from DIR/blobs/sha256/, api's, multi's and the
# referrers' remain, and api and multi still pull byte for byte.

HOSTED_SBOM_TYPE=application/vnd.example.sbom.v1
HOSTED_SIG_TYPE=application/vnd.example.signature.v1+json
HOSTED_REFERRERS=() # the artifacts' manifest digests

# hosted_curl WHAT WANT_STATUS HDR BODY CURL_ARGS...: a request; passes when it answers
# WANT_STATUS. Headers in HDR, body in BODY.
hosted_curl() {
    local what=$1 want=$2 hdr=$3 body=$4 code
    shift 4
    code=$("${CURL[@]}" -D "$hdr" -o "$body" -w '%{http_code}' "$@" || true)
    if [[ $code == "$want" ]]; then
        pass "$what: $code"
    else
        fail "$what: $want" "status $code: $(head -c 300 "$body" 2>/dev/null)"
        return 1
    fi
}

# header NAME HDR: the value of header NAME in the curl header dump HDR.
header() { grep -i "^$1:" "$2" | tail -n1 | cut -d: -f2- | tr -d ' \r' || true; }

# upload_url HDR: the Location of HDR as a URL.
upload_url() {
    local loc
    loc=$(header location "$1")
    [[ $loc == http* ]] || loc="https://$HOSTED$loc"
    printf '%s\n' "$loc"
}

# with_digest URL DIGEST: URL with the query parameter digest=DIGEST added.
with_digest() {
    if [[ $1 == *'?'* ]]; then printf '%s&digest=%s\n' "$1" "$2"; else printf '%s?digest=%s\n' "$1" "$2"; fi
}

# hosted_blob_upload HOW REPO FILE: upload FILE's bytes to REPO (HOW: monolithic, chunked or put)
# and check the answers; then HEAD of the blob must give its size.
hosted_blob_upload() {
    local how=$1 repo=$2 file=$3 digest size url h="$TMP/hosted/up.hdr" b="$TMP/hosted/up.body"
    local start="https://$HOSTED/v2/$repo/blobs/uploads/" octets=(-H 'Content-Type: application/octet-stream')
    digest="sha256:$(sha256_of "$file")"
    size=$(stat -c %s "$file")
    if [[ $how == monolithic ]]; then
        hosted_curl "POST $repo/blobs/uploads/?digest= with the body ($size bytes)" 201 "$h" "$b" -X POST \
            "${octets[@]}" --data-binary "@$file" "$(with_digest "$start" "$digest")" || return 0
    else
        hosted_curl "POST /v2/$repo/blobs/uploads/ (an upload session)" 202 "$h" "$b" -X POST "$start" || return 0
        expect_eq "POST $repo/blobs/uploads/: Range" "$(header range "$h")" "0-0"
        url=$(upload_url "$h")
        if [[ $how == chunked ]]; then
            hosted_curl "PATCH the upload with Content-Range 0-$((size - 1))" 202 "$h" "$b" -X PATCH "${octets[@]}" \
                -H "Content-Range: 0-$((size - 1))" --data-binary "@$file" "$url" || return 0
            expect_eq "PATCH the upload: Range" "$(header range "$h")" "0-$((size - 1))"
            url=$(upload_url "$h")
            hosted_curl "PUT the upload ?digest= (no body)" 201 "$h" "$b" -X PUT "${octets[@]}" --data-binary '' \
                "$(with_digest "$url" "$digest")" || return 0
        else
            hosted_curl "PUT the upload ?digest= with the body" 201 "$h" "$b" -X PUT "${octets[@]}" \
                --data-binary "@$file" "$(with_digest "$url" "$digest")" || return 0
        fi
    fi
    expect_eq "the upload's answer: Docker-Content-Digest, Location" \
        "$(header docker-content-digest "$h") $(header location "$h" | sed 's|^https://[^/]*||')" \
        "$digest /v2/$repo/blobs/$digest"
    head_check "HEAD /v2/$repo/blobs/<uploaded>" "https://$HOSTED/v2/$repo/blobs/$digest" "$digest" "$size"
}

# hosted_artifact NAME ARTIFACT_TYPE CONFIG_TYPE SUBJECT_FILE: write the artifact manifest
# NAME.json (ARTIFACT_TYPE may be empty) for NAME.config and NAME.data, with subject SUBJECT_FILE.
hosted_artifact() {
    python3 - "$@" <<'EOF'
import hashlib, json, os, sys
name, artifact_type, config_type, subject_file = sys.argv[1:]
def desc(media_type, path):
    data = open(path, "rb").read()
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
subject = desc(json.load(open(subject_file))["mediaType"], subject_file)
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
if artifact_type:
    m["artifactType"] = artifact_type
m["config"] = desc(config_type, name + ".config")
m["layers"] = [desc("application/octet-stream", name + ".data")]
m["subject"] = subject
m["annotations"] = {"org.opencontainers.image.created": "2026-12-02T00:00:00Z",
                    "org.example.e2e": os.path.basename(name)}
open(name + ".json", "w").write(json.dumps(m, separators=(",", ":")))
EOF
}

hosted_referrers() {
    step "hosted: referrers of $(hosted_ref api), attached with curl"
    local subject=${HOSTED_PUSHED[api]:-} repo=${HOSTED_REPO[api]} dir="$TMP/hosted/referrers" name
    [[ -n $subject ]] || { fail "hosted: referrers (the push of api failed)"; return; }
    mkdir -p "$dir"
    printf '{"generator":"regmirror-e2e","nonce":"%s"}' "$RANDOM$RANDOM" >"$dir/sbom.config"
    printf 'SPDXVersion: SPDX-2.3\nDocumentName: gallery-api-%s\n' "$RANDOM$RANDOM" >"$dir/sbom.data"
    printf '{"signer":"e2e","nonce":"%s"}' "$RANDOM$RANDOM" >"$dir/sig.config"
    head -c 64 /dev/urandom >"$dir/sig.data"
    hosted_blob_upload monolithic "$repo" "$dir/sbom.config"
    hosted_blob_upload chunked "$repo" "$dir/sbom.data"
    hosted_blob_upload put "$repo" "$dir/sig.config"
    hosted_blob_upload monolithic "$repo" "$dir/sig.data"
    if ! hosted_artifact "$dir/sbom" "$HOSTED_SBOM_TYPE" application/vnd.example.sbom.config.v1+json \
        "$TMP/hosted/api.manifest" || ! hosted_artifact "$dir/sig" "" "$HOSTED_SIG_TYPE" "$TMP/hosted/api.manifest"; then
        fail "hosted: writing the artifact manifests"
        return
    fi
    local h="$dir/put.hdr" b="$dir/put.body" digest
    HOSTED_REFERRERS=()
    for name in sbom sig; do
        digest="sha256:$(sha256_of "$dir/$name.json")"
        hosted_curl "PUT /v2/$repo/manifests/<$name artifact digest> with a subject" 201 "$h" "$b" -X PUT \
            -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$dir/$name.json" \
            "https://$HOSTED/v2/$repo/manifests/$digest" || continue
        HOSTED_REFERRERS+=("$digest")
        expect_eq "PUT $name artifact: OCI-Subject, Docker-Content-Digest" \
            "$(header oci-subject "$h") $(header docker-content-digest "$h")" "$subject $digest"
    done
    hosted_referrers_list "referrers of api" "" "sbom $HOSTED_SBOM_TYPE" "sig $HOSTED_SIG_TYPE"
    hosted_referrers_list "referrers of api, ?artifactType=sbom" "$HOSTED_SBOM_TYPE" "sbom $HOSTED_SBOM_TYPE"
    hosted_referrers_list "referrers of api, ?artifactType=signature (from its config)" "$HOSTED_SIG_TYPE" \
        "sig $HOSTED_SIG_TYPE"
    local unknown
    unknown="sha256:$(printf 'no such subject %s' "$RANDOM" | sha256sum | cut -d' ' -f1)"
    if hosted_curl "GET /v2/$repo/referrers/<unknown subject>" 200 "$h" "$b" "https://$HOSTED/v2/$repo/referrers/$unknown"; then
        expect_eq "referrers of an unknown subject: an empty index" \
            "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["manifests"]))' "$b" 2>&1)" 0
    fi
}

# hosted_referrers_list WHAT FILTER ENTRY...: GET api's referrers (?artifactType=FILTER when given)
# lists exactly the artifacts ENTRY ("NAME ARTIFACT_TYPE") with their size, media type and
# annotations, as an OCI index.
hosted_referrers_list() {
    local what=$1 filter=$2 dir="$TMP/hosted/referrers" entry name type want="" url
    shift 2
    url="https://$HOSTED/v2/${HOSTED_REPO[api]}/referrers/${HOSTED_PUSHED[api]}"
    # Percent-encoded: in a query a bare '+' (application/…+json) reads as a space.
    [[ -z $filter ]] || url+="?artifactType=$(python3 -c 'import sys, urllib.parse
print(urllib.parse.quote(sys.argv[1], safe=""))' "$filter")"
    hosted_curl "GET $what" 200 "$dir/list.hdr" "$dir/list.json" "$url" || return 0
    expect_eq "$what: Content-Type" "$(header content-type "$dir/list.hdr")" application/vnd.oci.image.index.v1+json
    [[ -z $filter ]] || expect_eq "$what: OCI-Filters-Applied" "$(header oci-filters-applied "$dir/list.hdr")" artifactType
    for entry in "$@"; do
        read -r name type <<<"$entry"
        want+="sha256:$(sha256_of "$dir/$name.json") $(stat -c %s "$dir/$name.json") $type $name;"
    done
    expect_eq "$what: the listed descriptors" "$(python3 - "$dir/list.json" <<'EOF' 2>&1
import json, sys
index = json.load(open(sys.argv[1]))
assert index["mediaType"] == "application/vnd.oci.image.index.v1+json", index.get("mediaType")
rows = sorted((d["digest"], d["size"], d.get("artifactType"), d.get("annotations", {}).get("org.example.e2e"),
               d["mediaType"]) for d in index["manifests"])
print("".join(f"{r[0]} {r[1]} {r[2]} {r[3]};" for r in rows if r[4] == "application/vnd.oci.image.manifest.v1+json"),
      end="")
print("".join(f" wrong mediaType {r[4]};" for r in rows if r[4] != "application/vnd.oci.image.manifest.v1+json"))
EOF
)" "$(tr ';' '\n' <<<"$want" | sed '/^$/d' | sort | sed 's/$/;/' | tr -d '\n')"
}

hosted_delete() {
    step "hosted: DELETE $(hosted_ref ui)'s manifest with curl, then pulls answer 404"
    local digest=${HOSTED_PUSHED[ui]:-} repo=${HOSTED_REPO[ui]} dir="$TMP/hosted" by client ref mark
    [[ -n $digest ]] || { fail "hosted: DELETE (the push of ui failed)"; return; }
    hosted_curl "DELETE /v2/$repo/manifests/<pushed digest>" 202 "$dir/delete.hdr" "$dir/delete.body" \
        -X DELETE "https://$HOSTED/v2/$repo/manifests/$digest" || return 0
    for by in "${HOSTED_TAG[ui]}" "$digest"; do
        if hosted_curl "after DELETE, GET /v2/$repo/manifests/${by:0:19}" 404 "$dir/gone.hdr" "$dir/gone.body" \
            -H "Accept: $ACCEPT_ALL" "https://$HOSTED/v2/$repo/manifests/$by"; then
            check "after DELETE, GET /v2/$repo/manifests/${by:0:19}: MANIFEST_UNKNOWN" grep -q MANIFEST_UNKNOWN "$dir/gone.body"
        fi
    done
    for client in "${HOSTED_CLIENTS[@]}"; do
        [[ $client == skopeo ]] || hosted_ready "$client" "$client pull after DELETE" || continue
        for by in tag digest; do
            # dockerd keeps the manifests it pulled in its containerd and reads one named by digest
            # from there, so its pull by digest need not ask the mirror: only the tag is tried.
            [[ $client == docker && $by == digest ]] && continue
            ref=$(hosted_ref ui)
            [[ $by == tag ]] || ref=$(hosted_ref ui "$digest")
            hosted_rm "$client" ui
            mark=$(log_mark)
            if run_logged "$dir/$client-gone.log" hosted_client_pull "$client" "$ref"; then
                fail "after DELETE, $client pull ${ref:0:60} fails" "it succeeded"
            else
                mirror_refused "after DELETE, $client pull ${ref:0:60}" "$mark" "$repo" 404
                info "transcript: $client pull $ref after DELETE: $(grep -iE 'error|unknown|not found' "$dir/$client-gone.log" | tail -n1 | head -c 200)"
            fi
        done
    done
    local key
    for key in api multi; do
        head_check "after DELETE of ui, HEAD $(hosted_ref "$key") still" \
            "https://$HOSTED/v2/${HOSTED_REPO[$key]}/manifests/${HOSTED_TAG[$key]}" "${HOSTED_PUSHED[$key]}" \
            "$(stat -c %s "$dir/$key.manifest")"
    done
}

# hosted_all_blobs KEY: every digest KEY's push stored (manifests, configs, layers).
hosted_all_blobs() {
    local key=$1 child
    printf '%s\n' "${HOSTED_PUSHED[$key]}"
    if [[ $key == multi ]]; then
        for child in $(hosted_summary multi children); do printf '%s\n' "$child"; done
        hosted_summary multi blobs | tr ' ' '\n'
    else
        manifest_field "$TMP/hosted/$key.manifest" blobs | tr ' ' '\n'
    fi
}

# hosted_blob_files WANT DIGEST...: the digests whose file under HDATA/blobs/sha256/ is not as WANT
# (present or absent); nothing when all are.
hosted_blob_files() {
    local want=$1 d
    shift
    for d in "$@"; do
        if [[ -f $HDATA/blobs/sha256/${d#sha256:} ]]; then
            [[ $want == present ]] || printf ' %s' "${d:0:19}…"
        else
            [[ $want == absent ]] || printf ' %s' "${d:0:19}…"
        fi
    done
}

hosted_gc() {
    step "hosted: regmirror gc --data-dir beside the running server"
    [[ -n ${HOSTED_PUSHED[ui]:-} ]] || { fail "hosted: gc (the push of ui failed)"; return; }
    local gone=() kept=() key out="$TMP/hosted/gc.out" dir="$TMP/hosted/referrers" name
    mapfile -t gone < <(hosted_all_blobs ui)
    for key in api multi; do
        [[ -z ${HOSTED_PUSHED[$key]:-} ]] || mapfile -t -O "${#kept[@]}" kept < <(hosted_all_blobs "$key")
    done
    # The referrers' manifests and blobs, when both were attached.
    if ((${#HOSTED_REFERRERS[@]} == 2)); then
        kept+=("${HOSTED_REFERRERS[@]}")
        for name in sbom sig; do
            kept+=("sha256:$(sha256_of "$dir/$name.config")" "sha256:$(sha256_of "$dir/$name.data")")
        done
    fi
    setup_ok "before gc, every blob file of ui, api, multi and the referrers is in $HDATA/blobs/sha256/" \
        test -z "$(hosted_blob_files present "${gone[@]}" "${kept[@]}")" || return 0
    local bytes=0 d
    for d in "${gone[@]}"; do bytes=$((bytes + $(stat -c %s "$HDATA/blobs/sha256/${d#sha256:}"))); done
    if run_logged "$out" "$REGMIRROR_BIN" gc --data-dir "$HDATA" --grace 0s; then
        pass "regmirror gc --data-dir $HDATA --grace 0s (server running)"
        sed 's/^/     | /' "$out"
        info "transcript: gc: $(tr '\n' ' ' <"$out" | head -c 300)"
    else
        fail "regmirror gc --data-dir $HDATA --grace 0s (server running)"
        return 0
    fi
    # Nothing else in this data dir is unreachable: what gc frees is exactly ui's files.
    check "gc reports freeing ui's ${#gone[@]} files, $bytes bytes" grep -qF "freed ${#gone[@]} files, $bytes bytes" "$out"
    # Each prints the digests whose file is not as it should be.
    expect_eq "gc removed all ${#gone[@]} of ui's files (manifest, config, layers) from blobs/sha256/" \
        "$(hosted_blob_files absent "${gone[@]}")" ""
    expect_eq "gc kept all ${#kept[@]} files of api, multi and the referrers in blobs/sha256/" \
        "$(hosted_blob_files present "${kept[@]}")" ""
    for key in api multi; do
        [[ -z ${HOSTED_PUSHED[$key]:-} ]] || hosted_pull skopeo "$key" tag
    done
    if ((${#HOSTED_REFERRERS[@]} == 2)); then
        hosted_referrers_list "after gc, referrers of api" "" "sbom $HOSTED_SBOM_TYPE" "sig $HOSTED_SIG_TYPE"
    fi
}
