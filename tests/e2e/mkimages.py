#!/usr/bin/env python3
"""Generate the end-to-end test images as OCI image layouts.

Usage: mkimages.py OUTDIR

Writes one OCI image layout per image under OUTDIR (``oci-layout``,
``index.json``, ``blobs/sha256/...``) and a summary of the expected digests
to OUTDIR/summary.json (also printed on stdout).

Layers are real gzip'd tars holding a few small files with random content,
so every run produces new digests (a warm cache from an earlier run can't
hide a bug). Gzip and tar timestamps are fixed, so the bytes depend only on
the file contents. Python 3 standard library only.

Every layout's index.json points at an OCI manifest or index (skopeo's oci:
transport skips Docker media types there). For tiny, whose pushed form is
Docker v2 schema 2, the summary's "manifest" is the digest of the manifest
skopeo writes when converting (see schema2_as_skopeo_writes_it) and
"layout_manifest" the OCI one in the layout; run.sh checks the prediction.

Images (the "repo" is the upstream repository it is pushed to):

  tiny:1                 library/tiny     OCI in the layout, pushed with
                                          `skopeo copy --format v2s2`, which
                                          converts it to Docker v2 schema 2
  ociimg:1               library/ociimg   OCI image manifest
  multi:1                library/multi    OCI index: linux/amd64 + linux/arm64
  someuser/tool:latest   someuser/tool    OCI image manifest, non-library repo
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

FIXED_MTIME = 1700000000  # tar entry times and config "created"
CREATED = "2023-11-14T22:13:20Z"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """One OCI image layout directory."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def put(self, data):
        digest = sha256(data)
        blob = os.path.join(self.path, "blobs", "sha256", digest.split(":", 1)[1])
        with open(blob, "wb") as f:
            f.write(data)
        return digest

    def write_index(self, descriptor, tag):
        desc = dict(descriptor)
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}
        with open(os.path.join(self.path, "index.json"), "wb") as f:
            f.write(canonical_json(index))


def make_layer(label, nfiles=3):
    """Return (gzip bytes, uncompressed tar bytes) with random file contents."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("data")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        d.mtime = FIXED_MTIME
        tar.addfile(d)
        for i in range(nfiles):
            body = (
                f"{label} file {i}\n".encode()
                + os.urandom(64 + 512 * i).hex().encode()
                + b"\n"
            )
            info = tarfile.TarInfo(f"data/{label}-{i}.txt")
            info.size = len(body)
            info.mode = 0o644
            info.mtime = FIXED_MTIME
            tar.addfile(info, io.BytesIO(body))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0) as g:
        g.write(tar_bytes)
    return gz.getvalue(), tar_bytes


def make_image(layout, label, arch, nlayers=2, variant=None):
    """Write config + layers + OCI manifest blobs; return a summary dict."""
    layers, diff_ids = [], []
    for n in range(nlayers):
        gz, tar_bytes = make_layer(f"{label}-{arch}-l{n}")
        layers.append({"mediaType": OCI_LAYER, "digest": layout.put(gz), "size": len(gz)})
        diff_ids.append(sha256(tar_bytes))
    config = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {
            "Cmd": ["/bin/sh", "-c", f"cat /data/{label}-*.txt"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/data",
            "Labels": {"regmirror.e2e": label},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": CREATED, "created_by": f"mkimages.py layer {n}"}
            for n in range(nlayers)
        ],
    }
    if variant:
        config["variant"] = variant
    config_bytes = canonical_json(config)
    config_desc = {
        "mediaType": OCI_CONFIG,
        "digest": layout.put(config_bytes),
        "size": len(config_bytes),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }
    manifest_bytes = canonical_json(manifest)
    return {
        "mediaType": manifest["mediaType"],
        "digest": layout.put(manifest_bytes),
        "size": len(manifest_bytes),
        "config": config_desc["digest"],
        "config_size": config_desc["size"],
        "layers": [l["digest"] for l in layers],
        "layer_sizes": [l["size"] for l in layers],
        "platform": {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})},
    }


def schema2_as_skopeo_writes_it(img):
    """The v2s2 manifest that `skopeo copy --format v2s2` makes from an OCI one.

    containers/image converts by building its Go `Schema2` struct and calling
    json.Marshal: compact, fields in struct order (schemaVersion, mediaType,
    config, layers; each descriptor mediaType, size, digest), no newline.
    The config blob is reused unchanged.
    """
    def desc(mt, size, digest):
        return '{"mediaType":%s,"size":%d,"digest":%s}' % (json.dumps(mt), size, json.dumps(digest))
    layers = ",".join(desc(DOCKER_LAYER, s, d) for d, s in zip(img["layers"], img["layer_sizes"]))
    text = '{"schemaVersion":2,"mediaType":%s,"config":%s,"layers":[%s]}' % (
        json.dumps(DOCKER_MANIFEST), desc(DOCKER_CONFIG, img["config_size"], img["config"]), layers)
    return text.encode()


def descriptor(img):
    return {"mediaType": img["mediaType"], "digest": img["digest"], "size": img["size"]}


def single(outdir, key, name, repo, tag, push_format):
    """A single-arch image; push_format "v2s2" predicts the converted manifest."""
    layout = Layout(os.path.join(outdir, key))
    img = make_image(layout, key, "amd64")
    layout.write_index(descriptor(img), tag)
    media_type, digest = img["mediaType"], img["digest"]
    if push_format == "v2s2":
        media_type, digest = DOCKER_MANIFEST, sha256(schema2_as_skopeo_writes_it(img))
    return {
        "name": name, "repo": repo, "tag": tag, "layout": layout.path,
        "format": push_format, "layout_manifest": img["digest"],
        "mediaType": media_type, "manifest": digest,
        "configs": [img["config"]], "blobs": [img["config"]] + img["layers"],
        "children": [],
    }


def multi(outdir, key, name, repo, tag):
    layout = Layout(os.path.join(outdir, key))
    children = [
        make_image(layout, key, "amd64"),
        make_image(layout, key, "arm64", variant="v8"),
    ]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [dict(descriptor(c), platform=c["platform"]) for c in children],
    }
    index_bytes = canonical_json(index)
    digest = layout.put(index_bytes)
    layout.write_index({"mediaType": OCI_INDEX, "digest": digest, "size": len(index_bytes)}, tag)
    return {
        "name": name, "repo": repo, "tag": tag, "layout": layout.path,
        "format": "oci-index", "layout_manifest": digest,
        "mediaType": OCI_INDEX, "manifest": digest,
        "configs": [c["config"] for c in children],
        "blobs": [b for c in children for b in [c["config"]] + c["layers"]],
        "children": [
            {"platform": c["platform"], "manifest": c["digest"], "config": c["config"],
             "layers": c["layers"]}
            for c in children
        ],
    }


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    outdir = os.path.abspath(argv[1])
    os.makedirs(outdir, exist_ok=True)
    images = [
        single(outdir, "tiny", "tiny", "library/tiny", "1", "v2s2"),
        single(outdir, "ociimg", "ociimg", "library/ociimg", "1", "oci"),
        multi(outdir, "multi", "multi", "library/multi", "1"),
        single(outdir, "tool", "someuser/tool", "someuser/tool", "latest", "oci"),
    ]
    summary = json.dumps({"images": images}, indent=2, sort_keys=True)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        f.write(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
