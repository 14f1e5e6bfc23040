# Stage: three regmirror instances on one site (--fleet), sharing the mirror's certificates
# (sourced by run.sh). A 60 MiB image (three random 20 MiB layers, generated here) is pushed to
# the upstream; 16 concurrent cold skopeo pulls spread over the three instances must cost the
# upstream one GET per blob; a second such image is pulled while one instance is killed with
# SIGKILL, and every pull aimed at the other two completes with the right digests; after the
# killed one restarts, warm pulls from every instance cost the upstream nothing.
# Sets: FLEET_PIDS, FLEET_PORTS. stages/bucket.sh runs a second fleet with the same helpers:
# FLEET_NAME names its logs and data directories, FLEET_BUCKETS gives each instance its bucket
# and FLEET_BUCKET_FALLBACKS the bucket's other endpoints; FLEET_HOSTED, when set, is the
# hosted namespace every instance takes pushes under.

FLEET_SIZE=3
FLEET_NAME=fleet
FLEET_BUCKETS=()
FLEET_BUCKET_FALLBACKS=()

# fleet_image NAME: an OCI layout at $TMP/fleet-images/NAME:1 with three 20 MiB random layers.
fleet_image() {
    python3 - "$TMP/fleet-images/$1" <<'EOF_PY'
import hashlib, io, json, os, sys, tarfile
root = sys.argv[1]
os.makedirs(f"{root}/blobs/sha256", exist_ok=True)
def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(f"{root}/blobs/sha256/{digest}", "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}
layers, diffs = [], []
for n in range(3):
    payload = os.urandom(20 * 1024 * 1024)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"layer{n}.bin")
        info.size, info.mtime = len(payload), 0
        tar.addfile(info, io.BytesIO(payload))
    desc = put(out.getvalue())
    diffs.append(desc["digest"])
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", **desc})
config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diffs}}
config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
               **put(json.dumps(config, sort_keys=True).encode())}
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc, "layers": layers}
manifest_desc = {"mediaType": manifest["mediaType"], **put(json.dumps(manifest, sort_keys=True).encode()),
                 "annotations": {"org.opencontainers.image.ref.name": "1"}}
with open(f"{root}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [manifest_desc]}, f)
with open(f"{root}/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(manifest_desc["digest"])
EOF_PY
}

# fleet_push NAME: generate NAME and push it upstream as library/NAME:1 (skopeo compresses the
# layers on the way, so the digests are the upstream's); its manifest is kept in
# $TMP/fleet-images/NAME.manifest, and its digest printed.
fleet_push() {
    local manifest="$TMP/fleet-images/$1.manifest"
    fleet_image "$1" >/dev/null || die "cannot generate the fleet image $1"
    "${SKOPEO[@]}" copy -q --dest-cert-dir "$UP_CA_DIR" "oci:$TMP/fleet-images/$1:1" "docker://$UP/library/$1:1" \
        >/dev/null || die "skopeo push of $1 to the upstream failed"
    "${SKOPEO[@]}" inspect --cert-dir "$UP_CA_DIR" --raw "docker://$UP/library/$1:1" >"$manifest" \
        || die "skopeo inspect of $UP/library/$1:1 failed"
    printf 'sha256:%s\n' "$(sha256_of "$manifest")"
}

# fleet_serve N: start instance N (0-based) on its port, in the fleet (on its bucket, if any).
fleet_serve() {
    local n=$1 members="" p bucket=()
    for p in "${FLEET_PORTS[@]}"; do members+="${members:+,}https://$MIRROR_NAME:$p"; done
    if [[ -n ${FLEET_BUCKETS[n]:-} ]]; then
        bucket=(--bucket "${FLEET_BUCKETS[n]}" --bucket-region garage --bucket-credentials "$TMP/bucket.toml")
    fi
    if [[ -n ${FLEET_BUCKET_FALLBACKS[n]:-} ]]; then bucket+=(--bucket-fallback "${FLEET_BUCKET_FALLBACKS[n]}"); fi
    if [[ -n ${FLEET_HOSTED:-} ]]; then bucket+=(--hosted-namespace "$FLEET_HOSTED"); fi
    start_bg "regmirror-$FLEET_NAME-$n" "$TMP/$FLEET_NAME-$n.log" env NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
        "$REGMIRROR_BIN" serve --listen "[::1]:${FLEET_PORTS[n]}" --data-dir "$TMP/$FLEET_NAME-data-$n" \
        --upstream "$UP_URL" --upstream-ca "$UP_CA" --fleet "$members" \
        --fleet-self "https://$MIRROR_NAME:${FLEET_PORTS[n]}" --fleet-key-file "$TMP/fleet.key" \
        --fleet-ca "$CACERT" "${bucket[@]}"
    FLEET_PIDS[n]=$BG_PID
    wait_http "regmirror-$FLEET_NAME-$n" "$BG_PID" "https://$MIRROR_NAME:${FLEET_PORTS[n]}/v2/" --cacert "$CACERT"
}

fleet_start() {
    step "$FLEET_NAME: three regmirror instances sharing one site's upstream work"
    local n
    openssl rand -hex 32 >"$TMP/fleet.key"
    FLEET_PORTS=() FLEET_PIDS=()
    for ((n = 0; n < FLEET_SIZE; n++)); do
        FLEET_PORTS[n]=$(free_port ::1)
        mkdir -p "$TMP/$FLEET_NAME-data-$n"
        cp -r "$MDATA/certs" "$TMP/$FLEET_NAME-data-$n/certs"
        LOG_FILES+=("$TMP/$FLEET_NAME-$n.log")
    done
    for ((n = 0; n < FLEET_SIZE; n++)); do fleet_serve "$n"; done
}

# fleet_pull TAG N IMAGE DIGEST: skopeo copy of library/IMAGE:1 from instance N into a dir
# named by TAG; passes when the copied manifest has DIGEST and every blob its digest.
fleet_pull() {
    local tag=$1 n=$2 image=$3 digest=$4 out="$TMP/fleet-pulls/$1" f
    rm -rf "$out" && mkdir -p "$out"
    timeout 300 "${SKOPEO[@]}" copy -q --src-cert-dir "$CA_ONLY_DIR" \
        "docker://$MIRROR_NAME:${FLEET_PORTS[n]}/library/$image:1" "dir:$out" >"$out.log" 2>&1 || return 1
    [[ "sha256:$(sha256_of "$out/manifest.json")" == "$digest" ]] || return 1
    for f in "$out"/*; do
        [[ $f == */manifest.json || $f == */version ]] && continue
        [[ "$(basename "$f")" == "$(sha256_of "$f")" ]] || return 1
    done
}

# fleet_blobs IMAGE: the digests of the blobs (config and layers) its upstream manifest names.
fleet_blobs() {
    python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
for d in [m["config"]] + m["layers"]: print(d["digest"])' "$TMP/fleet-images/$1.manifest"
}

# fleet_many IMAGE DIGEST COUNT [SKIP]: COUNT concurrent pulls spread over the instances (none
# at instance SKIP); sets FLEET_OK and FLEET_FAILED to how many completed verified.
fleet_many() {
    fleet_pulls_start "$@"
    fleet_pulls_wait
}

# fleet_pulls_start IMAGE DIGEST COUNT [SKIP]: fleet_many's pulls, started in the background
# (their pids in FLEET_PULLS) for a fault to strike while they run.
fleet_pulls_start() {
    local image=$1 digest=$2 count=$3 skip=${4:--1} i n
    FLEET_PULLS=()
    for ((i = 0; i < count; i++)); do
        n=$((i % FLEET_SIZE))
        ((n != skip)) || n=$(((n + 1) % FLEET_SIZE))
        fleet_pull "$image-$i" "$n" "$image" "$digest" &
        FLEET_PULLS+=($!)
    done
}

# fleet_pulls_wait: waits for FLEET_PULLS; sets FLEET_OK and FLEET_FAILED.
fleet_pulls_wait() {
    local pid rc
    FLEET_OK=0 FLEET_FAILED=0
    for pid in "${FLEET_PULLS[@]}"; do
        rc=0
        wait "$pid" || rc=$?
        if ((rc == 0)); then FLEET_OK=$((FLEET_OK + 1)); else FLEET_FAILED=$((FLEET_FAILED + 1)); fi
    done
}

# fleet_pulls_through_kill IMAGE WHAT PID SKIP: pushes IMAGE, starts 12 cold pulls of it (none
# at instance SKIP; -1: at all three), SIGKILLs PID (WHAT names it) a second in, and checks that
# every pull completed verified; the upstream's bytes go in a transcript line.
fleet_pulls_through_kill() {
    local image=$1 what=$2 pid=$3 skip=$4 digest mark
    digest=$(fleet_push "$image")
    mark=$(upstream_mark)
    fleet_pulls_start "$image" "$digest" 12 "$skip"
    sleep 1
    info "killing $what (pid $pid) with SIGKILL"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    fleet_pulls_wait
    expect_eq "$FLEET_NAME, $what killed: pulls completed with the right digests (of 12)" "$FLEET_OK" 12
    info "$FLEET_NAME, $what killed: transcript: $FLEET_OK of 12 pulls verified; the upstream sent $(fleet_upstream_bytes "$mark" "library/$image") blob bytes for an image whose blobs are $(fleet_image_bytes "$image") bytes"
}

# fleet_image_bytes IMAGE: the size of its blobs, as its upstream manifest gives them.
fleet_image_bytes() {
    python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
print(sum(d["size"] for d in [m["config"]] + m["layers"]))' "$TMP/fleet-images/$1.manifest"
}

# fleet_upstream_bytes MARK REPO: bytes of blob bodies the upstream sent after MARK.
fleet_upstream_bytes() {
    tail -n +"$(($1 + 1))" "$UPSTREAM_LOG" | grep -E "\"GET /v2/$2/blobs/" | awk '{ sum += $10 } END { print sum + 0 }'
}

fleet_cold() {
    step "fleet: 16 concurrent cold pulls of a 60 MiB image over three instances"
    local digest mark blobs
    digest=$(fleet_push fleetbig)
    mapfile -t blobs < <(fleet_blobs fleetbig)
    mark=$(upstream_mark)
    fleet_many fleetbig "$digest" 16
    expect_eq "fleet cold: pulls completed with the right digests (of 16)" "$FLEET_OK" 16
    upstream_served_once "fleet cold: 16 pulls over $FLEET_SIZE instances" "$mark" library/fleetbig "${blobs[@]}"
    info "fleet cold transcript: 16 pulls over $FLEET_SIZE instances; the upstream sent $(fleet_upstream_bytes "$mark" library/fleetbig) blob bytes for an image whose blobs are $(fleet_image_bytes fleetbig) bytes"
}

# fleet_kill [IMAGE]: a new image (default fleetkill) pulled through instances 1 and 2 while
# instance 0 is killed.
fleet_kill() {
    step "$FLEET_NAME: kill -9 one instance while 12 cold pulls run"
    fleet_pulls_through_kill "${1:-fleetkill}" "instance 0" "${FLEET_PIDS[0]}" 0
}

fleet_warm() {
    step "fleet: restart the killed instance, then warm pulls from every instance"
    local digest mark blobs b gets=0
    fleet_serve 0
    digest="sha256:$(sha256_of "$TMP/fleet-images/fleetbig.manifest")"
    mapfile -t blobs < <(fleet_blobs fleetbig)
    mark=$(upstream_mark)
    fleet_many fleetbig "$digest" 6
    expect_eq "fleet warm: pulls from every instance completed (of 6)" "$FLEET_OK" 6
    for b in "${blobs[@]}"; do gets=$((gets + $(upstream_blob_gets "$mark" library/fleetbig "$b"))); done
    expect_eq "fleet warm: blob GETs the upstream answered" "$gets" 0
    for n in "${!FLEET_PIDS[@]}"; do stop_pid "${FLEET_PIDS[n]}"; done
}
