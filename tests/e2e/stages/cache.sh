# Stage: the `regmirror cache` commands (sourced by run.sh).
#
# stats, ls and verify on the live data directory while the mirror serves it (they promise to
# be safe beside `serve`); then, on a copy of it, verify after one blob is corrupted (non-zero
# exit, the bad digest named, the file quarantined) and prune --max-size 0 (nothing left).

cache_commands() {
    step "regmirror cache stats|ls|verify on the live cache, then verify and prune on a copy"
    local out="$TMP/cache-cmd.out" key name repo tag digest layer blobs
    read -r key name repo tag _ _ digest <<<"$(image_line tiny)"
    layer=$(summary_field "$key" blobs | cut -d' ' -f2)
    if run_logged "$out" "$REGMIRROR_BIN" cache stats --data-dir "$MDATA"; then
        blobs=$(awk '$1 == "blobs" { print $2 }' "$out")
        # Every blob of every test image went through the mirror by now.
        if ((blobs >= $(all_blob_count))); then
            pass "cache stats: $blobs blobs ($(tr -s ' \n' ' ' <"$out"))"
        else
            fail "cache stats counts every blob pulled" "$(tr -s ' \n' ' ' <"$out"), want >= $(all_blob_count) blobs"
        fi
    else
        fail "regmirror cache stats"
    fi
    if run_logged "$out" "$REGMIRROR_BIN" cache ls --data-dir "$MDATA"; then
        check "cache ls lists docker.io/$repo:$tag at its digest" grep -qE "^docker\.io/$repo:$tag +$digest " "$out"
        check "cache ls lists the layer ${layer:0:19}… as a blob" grep -qE "^$layer +[0-9]+ +blob " "$out"
    else
        fail "regmirror cache ls"
    fi
    if run_logged "$out" "$REGMIRROR_BIN" cache verify --data-dir "$MDATA"; then
        check "cache verify on the live cache: everything matches" grep -q 'all cached content matches' "$out"
    else
        fail "regmirror cache verify on the live cache exits 0"
    fi
    cache_verify_corrupt "$layer"
}

# all_blob_count: distinct blobs of all test images.
all_blob_count() {
    local line key
    for line in "${IMAGES[@]}"; do
        read -r key _ <<<"$line"
        summary_field "$key" blobs | tr ' ' '\n'
    done | sort -u | grep -c .
}

# cache_verify_corrupt DIGEST: on a copy of the data dir, corrupt blob DIGEST; verify must
# fail naming it and quarantine it; then prune --max-size 0 leaves nothing.
cache_verify_corrupt() {
    local layer=$1 copy="$TMP/cache-copy" out="$TMP/cache-copy.out" file
    cp -a "$MDATA" "$copy" || die "cannot copy the data dir"
    file=$(find "$copy/blobs" -type f -name "${layer#sha256:}*" | head -n1)
    [[ -n $file ]] || die "no file for $layer under $copy/blobs"
    printf 'corrupt' | dd of="$file" bs=1 seek=0 conv=notrunc status=none
    if run_logged "$out" "$REGMIRROR_BIN" cache verify --data-dir "$copy"; then
        fail "cache verify exits non-zero on a corrupted blob" "it exited 0"
    else
        check "cache verify names the corrupted blob $layer" grep -qF "$layer: content hashes to" "$out"
        check "cache verify quarantined it" not test -e "$file"
    fi
    if run_logged "$out" "$REGMIRROR_BIN" cache verify --data-dir "$copy"; then
        pass "cache verify after quarantine: the rest matches"
    else
        fail "cache verify after quarantine: the rest matches"
    fi
    if run_logged "$out" "$REGMIRROR_BIN" cache prune --data-dir "$copy" --max-size 0; then
        check "cache prune --max-size 0 reports what it deleted" grep -qE '^pruned [1-9][0-9]* files' "$out"
        "$REGMIRROR_BIN" cache stats --data-dir "$copy" >"$out" 2>&1 || true
        check "cache stats after prune: 0 blobs, 0 bytes" \
            bash -c "grep -qE '^blobs +0$' '$out' && grep -qE '^bytes +0$' '$out'"
    else
        fail "regmirror cache prune --max-size 0"
    fi
}
