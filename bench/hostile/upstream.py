#!/usr/bin/env python3
"""A registry upstream for bench/hostile.sh: honest content, slow content, and lies.

Usage: upstream.py PORT CERT KEY STATE.json

Serves over TLS on 127.0.0.1:PORT. STATE.json receives the content it made (digests, sizes)
once it listens; GET /stats answers the bytes it sent per blob digest.

  bench/warm     an image (config + 2 layers of 256 KiB), served at full speed
  bench/cold     300 blobs of 1 MiB, each sent at 256 KiB/s (fills that last ~4 s)
  bench/lie      blobs that lie: an endless chunked body, a Content-Length of 1 TiB,
                 a redirect to 169.254.169.254, a redirect to plain http, wrong bytes

Every loop is bounded: the endless body stops after 60 s or 4 GiB.
"""

import asyncio
import hashlib
import json
import random
import ssl
import sys
import time

COLD_BLOBS = 300
COLD_SIZE = 1 << 20
COLD_RATE = 256 << 10  # bytes/s
ENDLESS_LIMIT = (4 << 30, 60.0)
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"

BLOBS = {}  # digest -> bytes
SENT = {}  # digest -> bytes sent
LIES = {}  # digest -> kind


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_blob(data):
    d = digest(data)
    BLOBS[d] = data
    return d


def warm_image():
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layers = [random.Random(f"warm{i}").randbytes(256 << 10) for i in range(2)]
    descriptor = lambda media, data: {"mediaType": media, "size": len(data), "digest": add_blob(data)}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_V2,
        "config": descriptor("application/vnd.docker.container.image.v1+json", config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", l) for l in layers],
    }).encode()
    return manifest, [d["digest"] for d in json.loads(manifest)["layers"]]


def lies():
    kinds = ["endless", "huge_length", "to_metadata", "to_http", "wrong_bytes"]
    for kind in kinds:
        LIES[digest(f"lie {kind}".encode())] = kind
    return {kind: d for d, kind in LIES.items()}


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    return method, target


def response(status, headers, body_len=None):
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers.items()]
    if body_len is not None:
        lines.append(f"Content-Length: {body_len}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send_slowly(writer, data, d):
    chunk = COLD_RATE // 10
    for i in range(0, len(data), chunk):
        writer.write(data[i:i + chunk])
        await writer.drain()
        SENT[d] = SENT.get(d, 0) + len(data[i:i + chunk])
        await asyncio.sleep(0.1)


async def send_lie(writer, kind, d, port):
    if kind == "endless":
        writer.write(response("200 OK", {"Transfer-Encoding": "chunked"}))
        chunk, started, sent = b"\0" * (256 << 10), time.monotonic(), 0
        while sent < ENDLESS_LIMIT[0] and time.monotonic() - started < ENDLESS_LIMIT[1]:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)
            SENT[d] = sent
        return False
    if kind == "huge_length":
        writer.write(response("200 OK", {}, 1 << 40) + b"\0" * (1 << 20))
        await writer.drain()
        SENT[d] = 1 << 20
        return False
    if kind in ("to_metadata", "to_http"):
        where = "http://169.254.169.254/latest/meta-data/" if kind == "to_metadata" \
            else f"http://127.0.0.1:{port}/plain/{d}"
        writer.write(response("307 Temporary Redirect", {"Location": where}, 0))
        return True
    data = random.Random(kind).randbytes(1 << 20)
    writer.write(response("200 OK", {}, len(data)) + data)
    SENT[d] = len(data)
    return True


async def answer(writer, method, target, state):
    path = target.split("?")[0]
    if path == "/v2/":
        writer.write(response("200 OK", {"Content-Type": "application/json"}, 2) + b"{}")
        return True
    if path == "/stats":
        body = json.dumps(SENT).encode()
        writer.write(response("200 OK", {"Content-Type": "application/json"}, len(body)) + body)
        return True
    if path == "/v2/bench/warm/manifests/latest" or path == f"/v2/bench/warm/manifests/{state['warm_manifest']}":
        body = state["manifest_bytes"]
        headers = {"Content-Type": MANIFEST_V2, "Docker-Content-Digest": state["warm_manifest"]}
        writer.write(response("200 OK", headers, len(body)) + (b"" if method == "HEAD" else body))
        return True
    d = path.rsplit("/", 1)[-1]
    if "/blobs/" in path and d in LIES:
        return await send_lie(writer, LIES[d], d, state["port"])
    if "/blobs/" in path and d in BLOBS:
        data = BLOBS[d]
        writer.write(response("200 OK", {"Content-Type": "application/octet-stream"}, len(data)))
        if method == "HEAD":
            return True
        if path.startswith("/v2/bench/cold/"):
            await send_slowly(writer, data, d)
        else:
            writer.write(data)
            SENT[d] = SENT.get(d, 0) + len(data)
        return True
    writer.write(response("404 Not Found", {"Content-Type": "application/json"}, 2) + b"{}")
    return True


async def serve(reader, writer, state):
    try:
        while True:
            method, target = await read_request(reader)
            if not await answer(writer, method, target, state):
                break
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError):
        pass
    finally:
        writer.close()


async def main(port, cert, key, state_path):
    manifest, warm_layers = warm_image()
    cold = [add_blob(random.Random(f"cold{i}").randbytes(COLD_SIZE)) for i in range(COLD_BLOBS)]
    lie_digests = lies()
    state = {"port": port, "manifest_bytes": manifest, "warm_manifest": digest(manifest)}
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = await asyncio.start_server(lambda r, w: serve(r, w, state), "127.0.0.1", port, ssl=tls, backlog=1024)
    with open(state_path, "w") as f:
        json.dump({"warm_manifest": state["warm_manifest"], "warm_layers": warm_layers,
                   "cold": cold, "lies": lie_digests}, f)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
