# Stage: the test images and the upstream registry (sourced by run.sh).
#
# Debian's docker-registry (distribution 2.8) stands in for Docker Hub, over HTTPS as Docker
# Hub is: a certificate for upstream.test (127.0.0.1 in the private /etc/hosts) from a CA of
# this run's own (openssl), which nothing on the machine trusts; regmirror is told of it with
# --upstream-ca.
# Sets: IMAGES (one line per image: key name repo tag format mediaType manifest),
#       UP (host:port), UP_URL (https://UP), UP_CA (its CA), UP_CA_DIR (a dir holding just
#       that CA, for skopeo's --cert-dir), UP_CURL, UPSTREAM_LOG, UPSTREAM_PID.

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

UP_NAME=upstream.test

# upstream_ca DIR: a CA and a server certificate for UP_NAME signed by it, in DIR.
upstream_ca() {
    local dir=$1
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=regmirror e2e upstream CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$UP_NAME" \
            -keyout "$dir/server.key" -out "$dir/server.csr" \
        && openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 2 -out "$dir/server.crt" -extfile <(printf '%s\n' \
                "subjectAltName=DNS:$UP_NAME" "extendedKeyUsage=serverAuth" "basicConstraints=CA:FALSE")
}

upstream_start() {
    step "start docker-registry (stand-in for Docker Hub) over HTTPS with a CA of its own"
    run_logged "$TMP/upstream-ca.log" upstream_ca "$TMP/upstream-ca" || die "openssl: the upstream's CA and certificate"
    UP_CA="$TMP/upstream-ca/ca.crt"
    UP_CA_DIR="$TMP/upstream-ca-only"
    mkdir -p "$UP_CA_DIR" && cp "$UP_CA" "$UP_CA_DIR/ca.crt"
    UP="$UP_NAME:$(free_port 127.0.0.1)"
    UP_URL="https://$UP"
    UP_CURL=(curl -sS --max-time 20 --cacert "$UP_CA")
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
  addr: 127.0.0.1:${UP##*:}
  tls:
    certificate: $TMP/upstream-ca/server.crt
    key: $TMP/upstream-ca/server.key
EOF
    UPSTREAM_LOG="$TMP/registry.log"
    LOG_FILES+=("$UPSTREAM_LOG")
    start_bg docker-registry "$UPSTREAM_LOG" docker-registry serve "$TMP/registry.yml"
    UPSTREAM_PID=$BG_PID
    wait_http docker-registry "$UPSTREAM_PID" "$UP_URL/v2/" --cacert "$UP_CA"
    setup_ok "the upstream's certificate is not trusted without its CA" not curl -sS --max-time 5 "$UP_URL/v2/"
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
        "${SKOPEO[@]}" copy -q --dest-cert-dir "$UP_CA_DIR" "${args[@]}" \
            "oci:$TMP/images/$key:$tag" "docker://$UP/$repo:$tag" \
            || die "skopeo push of $key to $UP/$repo:$tag failed"
        "${SKOPEO[@]}" inspect --cert-dir "$UP_CA_DIR" --raw "docker://$UP/$repo:$tag" >"$TMP/up-$key.manifest" \
            || die "skopeo inspect of $UP/$repo:$tag failed"
        [[ "sha256:$(sha256_of "$TMP/up-$key.manifest")" == "$digest" ]] \
            || die "upstream $repo:$tag does not have the expected $format manifest digest $digest"
    done
}

upstream_stop() {
    step "stop the upstream registry (pid $UPSTREAM_PID)"
    stop_pid "$UPSTREAM_PID"
    if "${UP_CURL[@]}" --max-time 2 -o /dev/null "$UP_URL/v2/" 2>/dev/null; then
        die "upstream still answers after stop"
    fi
    info "upstream is down"
}

# upstream_restart: the upstream again, on the same port with the same data (for the stages
# after the warm pulls that need it).
upstream_restart() {
    step "restart the upstream registry"
    start_bg docker-registry "$UPSTREAM_LOG" docker-registry serve "$TMP/registry.yml"
    UPSTREAM_PID=$BG_PID
    wait_http docker-registry "$UPSTREAM_PID" "$UP_URL/v2/" --cacert "$UP_CA"
}
