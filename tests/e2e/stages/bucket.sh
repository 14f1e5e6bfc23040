# Stage: a fleet on a shared bucket (sourced by run.sh, after fleet.sh, whose helpers it uses).
# Three Garage nodes on 127.0.0.1 (replication factor 3) hold one bucket; three regmirror
# instances, in a fleet, each use their own node's S3 endpoint first (the other two as
# fallbacks), and take pushes under site.lan. 16 concurrent cold pulls of a
# generated 60 MiB image spread over the instances must cost the upstream one GET per blob,
# and put every blob in the bucket under its digest. One Garage node is killed with SIGKILL
# during 12 cold pulls of another image, all of which must complete verified; one instance is
# killed likewise during pulls through the other two. Then everything restarts, one instance
# with an empty data directory: every object in the bucket must hash to its key (nothing
# partial is visible), and warm pulls from every instance must cost the upstream no blob GET.
# Then `export --bucket`, `import --bucket`, `cache ls --bucket` and `cache verify --bucket`
# run against the bucket (bucket_airgap); last, hosted repositories on the bucket: a push,
# a pull elsewhere, a delete through a third instance, `gc --bucket` (bucket_hosted).
# Needs garage (REGMIRROR_GARAGE or PATH; .ci/run installs it).

GARAGE_BIN=${REGMIRROR_GARAGE:-$(command -v garage || true)}
GARAGE_KEY_ID=GK00112233445566778899aabb
GARAGE_SECRET=$(printf '%064d' 7)
GARAGE_PIDS=() GARAGE_RPC=() GARAGE_S3=()

garage_cmd() {
    local n=$1; shift
    "$GARAGE_BIN" -c "$TMP/garage-$n/garage.toml" "$@"
}

# garage_node_start N: start Garage node N (its config written on the first start).
garage_node_start() {
    local n=$1 dir="$TMP/garage-$1"
    if [[ ! -f $dir/garage.toml ]]; then
        mkdir -p "$dir"
        GARAGE_RPC[n]=$(free_port 127.0.0.1) GARAGE_S3[n]=$(free_port 127.0.0.1)
        cat >"$dir/garage.toml" <<EOF_TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:${GARAGE_RPC[n]}"
rpc_public_addr = "127.0.0.1:${GARAGE_RPC[n]}"
rpc_secret = "$GARAGE_SECRET"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:${GARAGE_S3[n]}"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$(free_port 127.0.0.1)"
EOF_TOML
        LOG_FILES+=("$dir/garage.log")
    fi
    start_bg "garage-$n" "$dir/garage.log" env RUST_LOG=garage=warn "$GARAGE_BIN" -c "$dir/garage.toml" server
    GARAGE_PIDS[n]=$BG_PID
    wait_until "garage-$n" "$BG_PID" 100 "$GARAGE_BIN" -c "$dir/garage.toml" node id -q \
        || die "garage node $n did not start"
}

# bucket_retry TRIES CMD...: CMD (a function too, unlike wait_until's) until it succeeds, every
# 0.5 s, at most TRIES times; the last try's output is shown.
bucket_retry() {
    local tries=$1 i; shift
    for ((i = 0; i < tries; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    "$@"
}

# garage_connect: node 0 connects to the others (again, after a restart: a node that was
# down does not always find its way back alone; `bootstrap_peers` does this in production).
garage_connect() {
    local n id
    for ((n = 1; n < 3; n++)); do
        id=$(garage_cmd "$n" node id -q)
        bucket_retry 20 garage_cmd 0 node connect "$id" || die "garage: cannot connect node $n"
    done
}

bucket_start() {
    step "bucket: three Garage nodes (replication factor 3), one bucket"
    [[ -x $GARAGE_BIN ]] || die "the bucket stage needs garage (cargo install garage --locked; or set REGMIRROR_GARAGE)"
    info "garage: $("$GARAGE_BIN" --version 2>&1 | head -1)"
    local n id
    for ((n = 0; n < 3; n++)); do garage_node_start "$n"; done
    garage_connect
    for ((n = 0; n < 3; n++)); do
        id=$(garage_cmd "$n" node id -q)
        bucket_retry 20 garage_cmd 0 layout assign -z "dc$n" -c 1G "${id%%@*}" || die "garage: layout of node $n"
    done
    bucket_retry 20 garage_cmd 0 layout apply --version 1 || die "garage: layout apply"
    bucket_retry 40 garage_cmd 0 bucket create regmirror || die "garage: bucket create"
    bucket_retry 20 garage_cmd 0 key import --yes -n regmirror "$GARAGE_KEY_ID" "$GARAGE_SECRET" || die "garage: key import"
    bucket_retry 20 garage_cmd 0 bucket allow --read --write --owner regmirror --key "$GARAGE_KEY_ID" \
        || die "garage: bucket allow"
    printf 'access_key_id = "%s"\nsecret_access_key = "%s"\n' "$GARAGE_KEY_ID" "$GARAGE_SECRET" >"$TMP/bucket.toml"
    FLEET_NAME=bucketfleet
    FLEET_HOSTED=site.lan
    FLEET_BUCKETS=()
    for ((n = 0; n < 3; n++)); do
        FLEET_BUCKETS[n]="http://127.0.0.1:${GARAGE_S3[n]}/regmirror"
        # Its own node first, then the other two: a dead node costs it no bucket read.
        FLEET_BUCKET_FALLBACKS[n]="http://127.0.0.1:${GARAGE_S3[(n + 1) % 3]},http://127.0.0.1:${GARAGE_S3[(n + 2) % 3]}"
    done
    fleet_start
}

# bucket_curl N PATH [CURL ARGS]: a signed GET of PATH in the bucket, through Garage node N
# (Garage wants x-amz-content-sha256, which curl signs when it is given).
bucket_curl() {
    local n=$1 path=$2; shift 2
    curl -fsS --max-time 60 --aws-sigv4 "aws:amz:garage:s3" --user "$GARAGE_KEY_ID:$GARAGE_SECRET" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@" "http://127.0.0.1:${GARAGE_S3[n]}/regmirror$path"
}

# bucket_keys N PREFIX: the keys under PREFIX (one page is plenty here). The prefix goes
# percent-encoded: curl signs the query as written.
bucket_keys() {
    bucket_curl "$1" "?list-type=2&prefix=${2//\//%2F}" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g'
}

# bucket_verified N: passes when every blob in the bucket hashes to its key; prints the count.
bucket_verified() {
    local n=$1 key count=0 bad=""
    while read -r key; do
        [[ -n $key ]] || continue
        count=$((count + 1))
        [[ "$(bucket_curl "$n" "/$key" | sha256sum | cut -d' ' -f1)" == "${key##*/}" ]] || bad+=" $key"
    done < <(bucket_keys "$n" blobs/)
    check "bucket: all $count blobs in the bucket hash to their keys" test -z "$bad" -a "$count" -gt 0
}

bucket_cold() {
    step "bucket: 16 concurrent cold pulls of a 60 MiB image over three instances on one bucket"
    local digest mark blobs b missing=""
    digest=$(fleet_push bucketbig)
    mapfile -t blobs < <(fleet_blobs bucketbig)
    mark=$(upstream_mark)
    fleet_many bucketbig "$digest" 16
    expect_eq "bucket cold: pulls completed with the right digests (of 16)" "$FLEET_OK" 16
    upstream_served_once "bucket cold: 16 pulls over 3 instances" "$mark" library/bucketbig "${blobs[@]}"
    info "bucket cold transcript: 16 pulls over 3 instances on 3 Garage nodes; the upstream sent $(fleet_upstream_bytes "$mark" library/bucketbig) blob bytes for an image whose blobs are $(fleet_image_bytes bucketbig) bytes"
    for b in "${blobs[@]}"; do
        bucket_retry 60 bucket_curl 1 "/blobs/sha256/${b#sha256:}" -o /dev/null || missing+=" $b"
    done
    check "bucket cold: every blob of the image is in the bucket" test -z "$missing"
}

bucket_kill_garage() {
    step "bucket: kill -9 one Garage node while 12 cold pulls run"
    fleet_pulls_through_kill bucketnode "Garage node 2" "${GARAGE_PIDS[2]}" -1
    garage_node_start 2
    garage_connect
}

bucket_restart() {
    step "bucket: restart every Garage node and instance (one with an empty data directory), then warm pulls"
    local n mark gets=0 image b digest blobs
    for n in "${!FLEET_PIDS[@]}"; do stop_pid "${FLEET_PIDS[n]}"; done
    for n in "${!GARAGE_PIDS[@]}"; do kill -KILL "${GARAGE_PIDS[n]}"; wait "${GARAGE_PIDS[n]}" 2>/dev/null || true; done
    rm -rf "$TMP/bucketfleet-data-2/blobs" "$TMP/bucketfleet-data-2/manifests" "$TMP/bucketfleet-data-2/tags"
    for ((n = 0; n < 3; n++)); do garage_node_start "$n"; done
    garage_connect
    for ((n = 0; n < 3; n++)); do fleet_serve "$n"; done
    # Restarted together, the nodes answer 503 until they have found each other again; the
    # instances would rightly ask past the bucket meanwhile, which is not what is measured here.
    mapfile -t blobs < <(fleet_blobs bucketbig)
    b=${blobs[0]}
    for ((n = 0; n < 3; n++)); do
        bucket_retry 120 bucket_curl "$n" "/blobs/sha256/${b#sha256:}" -o /dev/null \
            || die "Garage node $n did not serve the bucket again"
    done
    bucket_verified 0
    mark=$(upstream_mark)
    for image in bucketbig bucketnode bucketkill; do
        digest="sha256:$(sha256_of "$TMP/fleet-images/$image.manifest")"
        fleet_many "$image" "$digest" 6
        expect_eq "bucket warm $image: pulls from every instance completed (of 6)" "$FLEET_OK" 6
        while read -r b; do gets=$((gets + $(upstream_blob_gets "$mark" "library/$image" "$b"))); done \
            < <(fleet_blobs "$image")
    done
    expect_eq "bucket warm: blob GETs the upstream answered" "$gets" 0
}

# The air-gap commands on the bucket: `export --all --bucket` into an empty data directory asks
# the upstream nothing and writes a bundle of every tag, which skopeo reads back; `import
# --bucket` of that bundle at another data directory finds everything already in the bucket;
# `cache ls --bucket` lists the tag and `cache verify --bucket` finds every object whole.
bucket_airgap() {
    step "bucket: export --bucket from an empty data directory, import --bucket elsewhere"
    local out="$TMP/bucket-export.tar" digest mark lines image
    local bucket=(--bucket "${FLEET_BUCKETS[0]}" --bucket-region garage --bucket-credentials "$TMP/bucket.toml")
    digest="sha256:$(sha256_of "$TMP/fleet-images/bucketbig.manifest")"
    mark=$(upstream_mark)
    check "bucket export --all: every tag in the bucket read from it into an empty data directory" \
        "$REGMIRROR_BIN" export --data-dir "$TMP/bucket-export" "${bucket[@]}" -o "$out" --all
    for image in bucketbig bucketnode bucketkill; do
        check "bucket export --all: the bundle names docker.io/library/$image:1" \
            grep -q "\"docker.io/library/$image:1\"" <(tar -xOf "$out" index.json)
    done
    expect_eq "bucket export: requests the upstream answered" "$(tail -n +"$((mark + 1))" "$UPSTREAM_LOG" | wc -l)" 0
    expect_eq "bucket export: the bundle's manifest, as skopeo reads it" \
        "sha256:$("${SKOPEO[@]}" inspect --raw "oci-archive:$out:docker.io/library/bucketbig:1" | sha256sum | cut -d' ' -f1)" \
        "$digest"
    lines=$("$REGMIRROR_BIN" import --data-dir "$TMP/bucket-import" "${bucket[@]}" "$out" 2>&1) \
        || fail "bucket import: import --bucket exited non-zero: $lines"
    info "bucket import: $(tail -1 <<<"$lines")"
    check "bucket import: every blob and manifest of the bundle was already in the bucket" \
        grep -qE "put 3 images in the bucket: 0 uploaded \(0 bytes\), 15 already there" <<<"$lines"
    check "bucket cache ls: the bucket's tags include docker.io/library/bucketbig:1" \
        grep -qx "docker.io/library/bucketbig:1" <("$REGMIRROR_BIN" cache ls "${bucket[@]}")
    lines=$("$REGMIRROR_BIN" cache verify "${bucket[@]}" 2>&1) || fail "bucket cache verify: exited non-zero: $lines"
    info "bucket cache verify: $lines"
    check "bucket cache verify: every blob and manifest in the bucket matches its digest" \
        grep -qE "^all [0-9]+ objects in the bucket match their digests" <<<"$lines"
}

# Hosted repositories on the bucket: skopeo pushes an image to instance 0 and pulls it from
# instance 2, which never saw it, byte for byte; `skopeo delete` through instance 1 deletes it
# for all three; `gc --bucket`, run beside instance 0 on its data directory, then frees its
# manifest and every blob from the bucket.
bucket_hosted() {
    step "bucket: a push to one instance, pulled from another, deleted through the third, collected"
    local ref="site.lan/team/app:v1" out="$TMP/bucket-hosted" digest blobs lines
    local bucket=(--bucket "${FLEET_BUCKETS[0]}" --bucket-region garage --bucket-credentials "$TMP/bucket.toml")
    local at=("$MIRROR_NAME:${FLEET_PORTS[0]}" "$MIRROR_NAME:${FLEET_PORTS[1]}" "$MIRROR_NAME:${FLEET_PORTS[2]}")
    digest="sha256:$(sha256_of "$TMP/fleet-images/bucketnode.manifest")"
    blobs=$(fleet_blobs bucketnode | wc -l)
    check "bucket hosted: skopeo copy of the upstream's library/bucketnode:1 to instance 0 as $ref" \
        timeout 300 "${SKOPEO[@]}" copy -q --src-cert-dir "$UP_CA_DIR" --dest-cert-dir "$CA_ONLY_DIR" \
        "docker://$UP/library/bucketnode:1" "docker://${at[0]}/$ref"
    rm -rf "$out" && mkdir -p "$out"
    check "bucket hosted: skopeo copy of $ref from instance 2" \
        timeout 300 "${SKOPEO[@]}" copy -q --src-cert-dir "$CA_ONLY_DIR" "docker://${at[2]}/$ref" "dir:$out"
    expect_eq "bucket hosted: the manifest instance 2 served, as pushed to instance 0" \
        "sha256:$(sha256_of "$out/manifest.json")" "$digest"
    check "bucket hosted: skopeo delete of $ref through instance 1" \
        timeout 60 "${SKOPEO[@]}" delete --cert-dir "$CA_ONLY_DIR" "docker://${at[1]}/$ref"
    check "bucket hosted: instance 0 no longer serves $ref" \
        bash -c '! "$@"' _ timeout 60 "${SKOPEO[@]}" inspect --raw --cert-dir "$CA_ONLY_DIR" "docker://${at[0]}/$ref"
    lines=$("$REGMIRROR_BIN" gc --data-dir "$TMP/bucketfleet-data-0" "${bucket[@]}" --grace 0s 2>&1) \
        || fail "bucket hosted: gc --bucket exited non-zero: $lines"
    info "bucket hosted: $(grep '^bucket:' <<<"$lines" | tr '\n' ' ')"
    check "bucket hosted: gc --bucket freed the manifest and its $blobs blobs" \
        grep -qE "^bucket: freed $((blobs + 1)) objects" <<<"$lines"
}

bucket_stop() {
    local n
    for n in "${!FLEET_PIDS[@]}"; do stop_pid "${FLEET_PIDS[n]}"; done
    for n in "${!GARAGE_PIDS[@]}"; do stop_pid "${GARAGE_PIDS[n]}"; done
}
