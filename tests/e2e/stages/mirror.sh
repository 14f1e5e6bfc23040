# Stage: regmirror with its self-generated CA, and plain-HTTP facts checked with curl
# (sourced by run.sh).
#
# regmirror listens on [::1] only and clients reach it as regmirror.test, which the
# private /etc/hosts maps to ::1 alone: dockerd treats registries in 127.0.0.0/8 as
# insecure and would skip certificate checks, so this proves the CA is trusted.
# Sets: MDATA, CACERT (regmirror's CA), CA_ONLY_DIR (a dir holding just ca.crt),
#       M_PORT, M (regmirror.test:PORT), MIRROR_PID, CURL.

MIRROR_NAME=regmirror.test

mirror_start() {
    step "regmirror: cert init (self-generated CA), then serve with neither --tls-cert nor --insecure-http"
    MDATA="$TMP/mirror-data"
    run_logged "$TMP/cert-init.log" "$REGMIRROR_BIN" cert init --data-dir "$MDATA" --hostname "$MIRROR_NAME" \
        || die "regmirror cert init failed"
    sed 's/^/     | /' "$TMP/cert-init.log"
    CACERT="$MDATA/certs/ca.crt"
    local f
    for f in ca.crt ca.key server.crt server.key; do
        [[ -s $MDATA/certs/$f ]] || fail "cert init wrote certs/$f"
    done
    check "server certificate verifies against regmirror's CA for $MIRROR_NAME and ::1" \
        openssl verify -CAfile "$CACERT" -verify_hostname "$MIRROR_NAME" -verify_ip ::1 "$MDATA/certs/server.crt"
    run_logged "$TMP/cert-show.log" "$REGMIRROR_BIN" cert show --data-dir "$MDATA" || true
    check "cert show lists $MIRROR_NAME" grep -q "$MIRROR_NAME" "$TMP/cert-show.log"
    CA_ONLY_DIR="$TMP/ca-only" # skopeo --cert-dir: every *.crt in it is a trusted CA
    mkdir -p "$CA_ONLY_DIR"
    cp "$CACERT" "$CA_ONLY_DIR/ca.crt"
    local before
    before=$(cat "$MDATA"/certs/*.crt | sha256sum)

    M_PORT=$(free_port ::1)
    M="$MIRROR_NAME:$M_PORT"
    MIRROR_LOG="$TMP/mirror.log"
    LOG_FILES+=("$MIRROR_LOG")
    info "binary: $REGMIRROR_BIN"
    mirror_serve
    expect_eq "serve kept the certificates cert init made" "$(cat "$MDATA"/certs/*.crt | sha256sum)" "$before"
    CURL=(curl -sS --max-time 20 --cacert "$CACERT")
}

# mirror_serve: start the mirror on MDATA and M_PORT, trusting only the upstream's own CA.
mirror_serve() {
    start_bg regmirror "$MIRROR_LOG" env NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
        "$REGMIRROR_BIN" serve --listen "[::1]:$M_PORT" --data-dir "$MDATA" --upstream "$UP_URL" \
        --upstream-ca "$UP_CA"
    MIRROR_PID=$BG_PID
    wait_http regmirror "$MIRROR_PID" "https://$M/v2/" --cacert "$CACERT"
}

# mirror_empty_cache: stop the mirror, prune its whole cache (`cache prune --max-size 0`), and
# start it again on the same port and certificates, so that the next pulls are cold.
mirror_empty_cache() {
    stop_pid "$MIRROR_PID"
    setup_ok "regmirror cache prune --max-size 0" "$REGMIRROR_BIN" cache prune --data-dir "$MDATA" --max-size 0 \
        || die "cannot empty the cache"
    "$REGMIRROR_BIN" cache stats --data-dir "$MDATA" >"$TMP/stats.out" || die "regmirror cache stats failed"
    grep -qE '^blobs +0$' "$TMP/stats.out" && grep -qE '^manifests +0$' "$TMP/stats.out" \
        || die "the cache is not empty after prune --max-size 0: $(tr '\n' ' ' <"$TMP/stats.out")"
    mirror_serve
    info "the mirror restarted with an empty cache"
}

# mirror_wrong_upstream_ca: a mirror that trusts another CA (its own) for the upstream answers a
# pull with a prompt upstream error that names the certificate, and caches nothing.
mirror_wrong_upstream_ca() {
    step "regmirror trusting the wrong CA for the upstream"
    local port data="$TMP/wrong-ca-data" log="$TMP/wrong-ca.log" code start ms
    port=$(free_port 127.0.0.1)
    LOG_FILES+=("$log")
    start_bg regmirror-wrong-ca "$log" env NO_COLOR=1 "$REGMIRROR_BIN" serve --insecure-http \
        --listen "127.0.0.1:$port" --data-dir "$data" --upstream "$UP_URL" --upstream-ca "$CACERT"
    wait_http regmirror-wrong-ca "$BG_PID" "http://127.0.0.1:$port/v2/"
    start=$(date +%s%N)
    code=$(curl -sS --max-time 60 -o "$TMP/wrong-ca.body" -w '%{http_code}' \
        "http://127.0.0.1:$port/v2/$F_NAME/manifests/$F_TAG" || true)
    ms=$((($(date +%s%N) - start) / 1000000))
    if [[ $code == 503 ]] && grep -q UNAVAILABLE "$TMP/wrong-ca.body" && grep -qi certificate "$TMP/wrong-ca.body" \
        && ((ms < 10000)); then
        pass "wrong upstream CA: 503 UNAVAILABLE in $ms ms naming the certificate ($(head -c 200 "$TMP/wrong-ca.body"))"
    else
        fail "wrong upstream CA: 503 UNAVAILABLE within 10 s naming the certificate" \
            "status $code after $ms ms: $(head -c 300 "$TMP/wrong-ca.body")"
    fi
    "$REGMIRROR_BIN" cache stats --data-dir "$data" >"$TMP/wrong-ca.stats" 2>&1 || true
    check "wrong upstream CA: nothing cached" grep -qE '^manifests +0$' "$TMP/wrong-ca.stats"
    stop_pid "$BG_PID"
}

mirror_checks() {
    step "regmirror: name resolution, CA distribution, client-config"
    [[ "$(getent ahosts "$MIRROR_NAME" | awk '{print $1}' | sort -u | tr '\n' ' ')" == "::1 " ]] \
        || die "$MIRROR_NAME does not resolve to ::1 only"
    local hub
    for hub in registry-1.docker.io auth.docker.io; do
        setup_ok "Docker Hub ($hub) is unreachable" not curl -sS --max-time 5 -o /dev/null "https://$hub/v2/" \
            || die "Docker Hub ($hub) answered: clients could bypass the mirror"
    done
    local code
    code=$("${CURL[@]}" -o "$TMP/v2.body" -w '%{http_code}' "https://$M/v2/" || true)
    expect_eq "GET https://$M/v2/ is 200" "$code" "200"
    if curl -sS --max-time 5 -o /dev/null "https://$M/v2/" 2>"$TMP/untrusted.err"; then
        fail "without regmirror's CA, TLS to $M is refused" "curl trusted it"
    else
        pass "without regmirror's CA, TLS to $M is refused ($(head -n1 "$TMP/untrusted.err"))"
    fi
    code=$("${CURL[@]}" -o "$TMP/ca.served" -w '%{http_code}' "https://$M/ca.crt" || true)
    expect_eq "GET https://$M/ca.crt is 200" "$code" "200"
    check "GET /ca.crt equals certs/ca.crt" cmp "$TMP/ca.served" "$CACERT"

    local out="$TMP/client-config.docker"
    if run_logged "$out" "$REGMIRROR_BIN" client-config docker --mirror "$M" --data-dir "$MDATA"; then
        check "client-config docker mentions registry-mirrors" grep -q registry-mirrors "$out"
        check "client-config docker mentions https://$M" grep -qF "https://$M" "$out"
        if grep -qi insecure "$out"; then
            fail "client-config docker says nothing about insecure" "$(grep -i insecure "$out")"
        else
            pass "client-config docker says nothing about insecure"
        fi
    else
        fail "regmirror client-config docker --mirror $M"
    fi
}

# ------------------------------------------------------------- HTTP facts (curl)
ACCEPT_ALL="application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

# head_check WHAT URL WANT_DIGEST WANT_LENGTH [WANT_CONTENT_TYPE]
head_check() {
    local what=$1 url=$2 want_digest=$3 want_len=$4 want_ct=${5:-} hdr code len dcd ct
    hdr="$TMP/head.$RANDOM"
    code=$("${CURL[@]}" -I -H "Accept: $ACCEPT_ALL" -o "$hdr" -w '%{http_code}' "$url" || true)
    len=$(grep -i '^content-length:' "$hdr" | tail -n1 | cut -d: -f2 | tr -d ' \r' || true)
    dcd=$(grep -i '^docker-content-digest:' "$hdr" | tail -n1 | cut -d: -f2- | tr -d ' \r' || true)
    ct=$(grep -i '^content-type:' "$hdr" | tail -n1 | cut -d: -f2- | tr -d ' \r' || true)
    if [[ $code == 200 && -n $len && $len != 0 && $len == "$want_len" && $dcd == "$want_digest" \
        && (-z $want_ct || $ct == "$want_ct") ]]; then
        pass "$what: 200, Content-Length $len, Docker-Content-Digest${want_ct:+, Content-Type}"
    else
        fail "$what" "status $code, Content-Length '${len}' (want $want_len), Docker-Content-Digest '${dcd}' (want $want_digest)${want_ct:+, Content-Type \"$ct\" (want $want_ct)}"
        sed 's/^/     | /' "$hdr"
    fi
}

# The first image (tiny) and its first layer, for the HTTP facts.
facts_image() {
    read -r F_KEY F_NAME F_REPO F_TAG _ F_MT F_DIGEST <<<"${IMAGES[0]}"
    F_SIZE=$(stat -c %s "$TMP/up-$F_KEY.manifest")
    F_LAYER=$(summary_field "$F_KEY" blobs | cut -d' ' -f2)
    F_LAYER_SIZE=$(stat -c %s "$TMP/images/$F_KEY/blobs/sha256/${F_LAYER#sha256:}")
}

mirror_facts_upstream_up() {
    step "HTTP facts (curl, upstream up)"
    facts_image
    head_check "HEAD /v2/$F_NAME/manifests/$F_TAG" "https://$M/v2/$F_NAME/manifests/$F_TAG" "$F_DIGEST" "$F_SIZE" "$F_MT"
    head_check "HEAD /v2/library/$F_NAME/manifests/$F_TAG" "https://$M/v2/library/$F_NAME/manifests/$F_TAG" \
        "$F_DIGEST" "$F_SIZE" "$F_MT"
    head_check "HEAD /v2/$F_NAME/blobs/<layer>" "https://$M/v2/$F_NAME/blobs/$F_LAYER" "$F_LAYER" "$F_LAYER_SIZE"
    local code
    code=$("${CURL[@]}" -o "$TMP/blob.mirror" -w '%{http_code}' "https://$M/v2/$F_NAME/blobs/$F_LAYER" || true)
    "${UP_CURL[@]}" -o "$TMP/blob.up" "$UP_URL/v2/$F_REPO/blobs/$F_LAYER" || true
    check "GET blob through the mirror is byte-identical to upstream (status $code)" cmp "$TMP/blob.mirror" "$TMP/blob.up"
    # Over HTTP/1.1: over HTTP/2 the mirror may answer before the request body has
    # arrived and then reset the stream with NO_ERROR (allowed by RFC 9113 §8.1), which
    # curl 7.88 reports as error 92 now and then; that is noted below, not counted.
    local i codes="" put=(-X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
        --data-binary @"$TMP/up-$F_KEY.manifest" "https://$M/v2/$F_NAME/manifests/e2e-push")
    code=$("${CURL[@]}" --http1.1 -o "$TMP/put.body" -w '%{http_code}' "${put[@]}" || true)
    if [[ $code == 405 ]] && grep -q UNSUPPORTED "$TMP/put.body"; then
        pass "PUT manifest (HTTP/1.1): 405 with UNSUPPORTED"
    else
        fail "PUT manifest (HTTP/1.1): 405 with UNSUPPORTED" \
            "status $code, body: $(head -c 300 "$TMP/put.body" 2>/dev/null)"
    fi
    for ((i = 0; i < 10; i++)); do
        codes+=" $("${CURL[@]}" --http2 -o /dev/null -w '%{http_code}' "${put[@]}" 2>/dev/null || true)"
    done
    note "10 PUTs over HTTP/2 gave:$codes (000: curl error 92 after the mirror's RST_STREAM(NO_ERROR))"
}

mirror_facts_upstream_down() {
    step "HTTP facts (curl, upstream down)"
    facts_image
    local code
    code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "https://$M/v2/" || true)
    expect_eq "GET /v2/ is 200 with the upstream down" "$code" "200"
    head_check "warm HEAD /v2/$F_NAME/manifests/<digest>" "https://$M/v2/$F_NAME/manifests/$F_DIGEST" \
        "$F_DIGEST" "$F_SIZE" "$F_MT"
    head_check "warm HEAD /v2/$F_NAME/blobs/<layer>" "https://$M/v2/$F_NAME/blobs/$F_LAYER" "$F_LAYER" "$F_LAYER_SIZE"
    # Not counted: by-digest pulls are what must work warm. A tag with the upstream
    # down is served stale per docs/protocol.md §9.5 (Warning header); report what happened.
    code=$("${CURL[@]}" -o /dev/null -D "$TMP/stale.hdr" -w '%{http_code}' \
        -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
        "https://$M/v2/$F_NAME/manifests/$F_TAG" || true)
    note "GET /v2/$F_NAME/manifests/$F_TAG with the upstream down -> $code$(
        grep -i '^warning:' "$TMP/stale.hdr" | tr -d '\r' | sed 's/^/, /' || true)"
}
