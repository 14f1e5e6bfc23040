# Stage: the test images and the upstream registry (sourced by run.sh).
#
# Debian's docker-registry (distribution 2.8) on 127.0.0.1 stands in for Docker Hub.
# Sets: IMAGES (one line per image: key name repo tag format mediaType manifest),
#       UP (host:port), UPSTREAM_PID.

images_generate() {
    step "generate test images"
    python3 "$HERE/mkimages.py" "$TMP/images" >/dev/null
    SUMMARY="$TMP/images/summary.json"
    mapfile -t IMAGES < <(python3 - "$SUMMARY" <<'EOF'
import json, os, sys
for i in json.load(open(sys.argv[1]))["images"]:
    print(os.path.basename(i["layout"]), i["name"], i["repo"], i["tag"], i["format"],
          i["mediaType"], i["manifest"])
EOF
)
    local line
    for line in "${IMAGES[@]}"; do info "image: $line"; done
}

# image_line KEY: IMAGES' line for KEY.
image_line() {
    local line
    for line in "${IMAGES[@]}"; do
        [[ $line == "$1 "* ]] && { printf '%s\n' "$line"; return 0; }
    done
    die "no image $1"
}

upstream_start() {
    step "start docker-registry (stand-in for Docker Hub)"
    UP="127.0.0.1:$(free_port 127.0.0.1)"
    mkdir -p "$TMP/registry-data"
    cat >"$TMP/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $TMP/registry-data
  delete:
    enabled: false
http:
  addr: $UP
EOF
    LOG_FILES+=("$TMP/registry.log")
    start_bg docker-registry "$TMP/registry.log" docker-registry serve "$TMP/registry.yml"
    UPSTREAM_PID=$BG_PID
    wait_http docker-registry "$UPSTREAM_PID" "http://$UP/v2/"
}

upstream_push() {
    step "push test images to the upstream"
    local line key repo tag format digest args
    for line in "${IMAGES[@]}"; do
        read -r key _ repo tag format _ digest <<<"$line"
        args=()
        case $format in
            v2s2) args=(--format v2s2) ;;
            oci-index) args=(--all) ;;
        esac
        "${SKOPEO[@]}" copy -q --dest-tls-verify=false "${args[@]}" \
            "oci:$TMP/images/$key:$tag" "docker://$UP/$repo:$tag" \
            || die "skopeo push of $key to $UP/$repo:$tag failed"
        "${SKOPEO[@]}" inspect --tls-verify=false --raw "docker://$UP/$repo:$tag" >"$TMP/up-$key.manifest"
        expect_eq "upstream $repo:$tag has the expected $format manifest digest" \
            "sha256:$(sha256_of "$TMP/up-$key.manifest")" "$digest"
    done
}

upstream_stop() {
    step "stop the upstream registry (pid $UPSTREAM_PID)"
    stop_pid "$UPSTREAM_PID"
    if curl -sS --max-time 2 -o /dev/null "http://$UP/v2/" 2>/dev/null; then
        die "upstream still answers after stop"
    fi
    info "upstream is down"
}
