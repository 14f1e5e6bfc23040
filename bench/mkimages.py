#!/usr/bin/env python3
"""Generate the benchmark images as OCI image layouts, and a cache of many small blobs.

Usage: mkimages.py images OUTDIR
       mkimages.py blobs DATADIR COUNT

``images`` writes one OCI image layout per image under OUTDIR (``oci-layout``,
``index.json``, ``blobs/sha256/...``) and OUTDIR/summary.json:

  small   library/small:1    2 layers: 19 MiB + 1 MiB (the 1 MiB one is the
                             blob the request-rate runs fetch)
  medium  library/medium:1   5 layers of 12 MiB
  big     library/big:1      1 layer of 1 GiB

Layers are incompressible bytes from os.urandom, streamed to disk while hashed, so
memory stays flat. They are not real tars: nothing here unpacks them (skopeo copies
to dir: verbatim), and every run makes new digests, so no cache from an earlier run
can help. The manifest and config are valid OCI JSON, built with the helpers of
tests/e2e/mkimages.py (imported, not copied).

``blobs`` fills DATADIR/blobs/sha256 with COUNT small files, each named by the
sha256 of its content, as regmirror's cache lays them out, for the restart timing.
Python 3 standard library only.
"""

import hashlib
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(HERE, "..", "tests", "e2e", "mkimages.py")
_spec = importlib.util.spec_from_file_location("e2e_mkimages", E2E)
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

MIB = 1 << 20
CHUNK = 4 * MIB

# key -> (repo, tag, layer sizes)
IMAGES = {
    "small": ("library/small", "1", [19 * MIB, 1 * MIB]),
    "medium": ("library/medium", "1", [12 * MIB] * 5),
    "big": ("library/big", "1", [1024 * MIB]),
}


def random_blob(layout, size):
    """Stream `size` random bytes into the layout; return the digest."""
    tmp = os.path.join(layout.path, "blobs", "sha256", ".partial")
    h = hashlib.sha256()
    with open(tmp, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    digest = "sha256:" + h.hexdigest()
    os.rename(tmp, os.path.join(layout.path, "blobs", "sha256", h.hexdigest()))
    return digest


def make_image(outdir, key, repo, tag, sizes):
    layout = e2e.Layout(os.path.join(outdir, key))
    layers = [
        {"mediaType": e2e.OCI_LAYER, "digest": random_blob(layout, s), "size": s}
        for s in sizes
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": e2e.CREATED,
        "config": {"Labels": {"regmirror.bench": key}},
        # Not the real diff ids (the layers are not tars); nothing here unpacks them.
        "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
    }
    config_bytes = e2e.canonical_json(config)
    config_desc = {
        "mediaType": e2e.OCI_CONFIG,
        "digest": layout.put(config_bytes),
        "size": len(config_bytes),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": e2e.OCI_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }
    manifest_bytes = e2e.canonical_json(manifest)
    desc = {
        "mediaType": e2e.OCI_MANIFEST,
        "digest": layout.put(manifest_bytes),
        "size": len(manifest_bytes),
    }
    layout.write_index(desc, tag)
    return {
        "key": key,
        "repo": repo,
        "tag": tag,
        "layout": layout.path,
        "mediaType": e2e.OCI_MANIFEST,
        "manifest": desc["digest"],
        "manifest_size": desc["size"],
        "config": config_desc["digest"],
        "config_size": config_desc["size"],
        "layers": [l["digest"] for l in layers],
        "layer_sizes": sizes,
        "bytes": sum(sizes) + config_desc["size"] + desc["size"],
    }


def images(outdir):
    outdir = os.path.abspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    summary = {"images": [make_image(outdir, k, *v) for k, v in IMAGES.items()]}
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")


def blobs(datadir, count):
    """COUNT files of 64-100 bytes under DATADIR/blobs/sha256, plus the other cache dirs."""
    target = os.path.join(datadir, "blobs", "sha256")
    os.makedirs(target, exist_ok=True)
    for d in ("manifests/sha256", "blobs/sha512", "manifests/sha512", "tags", "tmp"):
        os.makedirs(os.path.join(datadir, d), exist_ok=True)
    seed = os.urandom(16)
    for i in range(count):
        body = seed + i.to_bytes(8, "big") + os.urandom(40 + i % 37)
        with open(os.path.join(target, hashlib.sha256(body).hexdigest()), "wb") as f:
            f.write(body)


def main(argv):
    if len(argv) == 3 and argv[1] == "images":
        images(argv[2])
    elif len(argv) == 4 and argv[1] == "blobs":
        blobs(argv[2], int(argv[3]))
    else:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
