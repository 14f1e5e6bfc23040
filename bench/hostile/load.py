#!/usr/bin/env python3
"""The clients of bench/hostile.sh: warm pulls timed with and without a hostile crowd.

Usage: load.py MIRROR_PORT MIRROR_PID DATA_DIR STATE.json UPSTREAM_PORT UPSTREAM_CA OUT.json

Phases, one after the other:
  1. 64 clients pull the warm image (manifest + 2 layers) for 10 s: the unloaded latencies.
  2. The crowd arrives: 2,000 sockets that never send a byte and 300 clients that send a
     request's headers one byte a second (both spread over 20 source addresses), and 300
     distinct cold blobs requested from 20 addresses and abandoned after the status line.
     The 64 warm clients pull again for 20 s while the mirror's RSS and open descriptors are
     sampled every 0.2 s; every silent socket's life is timed to its close (at most 60 s).
  3. The lying upstream: each lie asked for once through the mirror, its status and time kept.
Then OUT.json gets every number bench/hostile.sh reports.
"""

import asyncio
import json
import os
import ssl
import statistics
import sys
import time
import urllib.request

WARM_CLIENTS = 64
IDLE_SOCKETS = 2000
SLOW_HEADERS = 300
ADDRESSES = 20
MAX_SOCKET_LIFE = 60.0


async def request(reader, writer, path, accept="*/*"):
    """One keep-alive GET; returns (status, body bytes)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: mirror\r\nAccept: {accept}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = next(int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return status, length


async def warm_client(port, state, until, latencies):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    while time.monotonic() < until:
        started = time.monotonic()
        status, _ = await request(reader, writer, "/v2/bench/warm/manifests/latest", accept)
        assert status == 200, f"warm manifest: {status}"
        for layer in state["warm_layers"]:
            status, _ = await request(reader, writer, f"/v2/bench/warm/blobs/{layer}")
            assert status == 200, f"warm layer: {status}"
        latencies.append(time.monotonic() - started)
    writer.close()


async def warm_phase(port, state, seconds):
    latencies = []
    until = time.monotonic() + seconds
    await asyncio.gather(*(warm_client(port, state, until, latencies) for _ in range(WARM_CLIENTS)))
    latencies.sort()
    return {"pulls": len(latencies), "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


def source(i):
    return (f"127.0.{10 + i % ADDRESSES}.1", 0)


async def silent_socket(port, i, lives, payload=b""):
    """Opens a connection, sends `payload` one byte a second, and times its life."""
    opened = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=source(i))
    except OSError as e:
        lives.append(("refused", str(e)))
        return
    try:
        async def trickle():
            for byte in payload:
                writer.write(bytes([byte]))
                await asyncio.sleep(1)
            await asyncio.sleep(MAX_SOCKET_LIFE)
        trickling = asyncio.ensure_future(trickle())
        await asyncio.wait_for(reader.read(1), MAX_SOCKET_LIFE)
        trickling.cancel()
        lives.append(("closed", time.monotonic() - opened))
    except (asyncio.TimeoutError, ConnectionError, OSError):
        lives.append(("open", time.monotonic() - opened))
    finally:
        writer.close()


async def abandoned_cold(port, i, digest, outcomes):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=source(i))
        writer.write(f"GET /v2/bench/cold/blobs/{digest} HTTP/1.1\r\nHost: mirror\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 30)
        outcomes.append(line.decode("latin-1").split(" ")[1] if line else "closed")
        writer.close()
    except (asyncio.TimeoutError, ConnectionError, OSError, IndexError) as e:
        outcomes.append(type(e).__name__)


async def sample(pid, stop, samples):
    while not stop.is_set():
        try:
            rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
            samples.append((rss // 1024, len(os.listdir(f"/proc/{pid}/fd"))))
        except (OSError, StopIteration):
            pass
        await asyncio.sleep(0.2)


async def read_to_end(reader, head):
    """The body after `head`: "complete" when it ended as its framing says, else "aborted"."""
    length = [int(l.split(":", 1)[1]) for l in head.split("\r\n") if l.lower().startswith("content-length:")]
    body = await reader.read(-1)
    if length:
        return "complete" if len(body) == length[0] else "aborted"
    if "transfer-encoding: chunked" in head.lower():
        return "complete" if body.endswith(b"0\r\n\r\n") else "aborted"
    return "complete"


async def lie(port, kind, digest):
    """Asks for one lying blob; how the mirror answered and whether the body ended clean."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /v2/bench/lie/blobs/{digest} HTTP/1.1\r\nHost: mirror\r\nConnection: close\r\n\r\n".encode())
    try:
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 90)).decode("latin-1")
        status = int(head.split(" ")[1])
        body = await asyncio.wait_for(read_to_end(reader, head), 90)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as e:
        status, body = 0, type(e).__name__
    finally:
        writer.close()
    return {"kind": kind, "status": status, "body": body, "seconds": round(time.monotonic() - started, 2)}


async def fills_settled(port, within):
    """Waits (bounded) until the abandoned cold fills have ended, so that the lies phase
    measures only itself."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        if any(l.split()[-1] in ("0", "0.0") for l in metrics.splitlines() if l.startswith("regmirror_fills_in_flight ")):
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"fills still running after {within} s")


def allocated_bytes(path):
    """Disk the data directory holds (allocated blocks, so a reservation counts): on a shared
    machine the file system's free space moves with everyone else's writes."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def cached(data_dir, digest):
    alg, hex_ = digest.split(":")
    return os.path.exists(os.path.join(data_dir, "blobs", alg, hex_))


async def hostile_phase(port, pid, state):
    lives, slow_lives, cold, samples, stop = [], [], [], [], asyncio.Event()
    sampler = asyncio.ensure_future(sample(pid, stop, samples))
    crowd = [silent_socket(port, i, lives) for i in range(IDLE_SOCKETS)]
    crowd += [silent_socket(port, i, slow_lives, b"GET /v2/ HTTP/1.1\r\nHost: m\r\nX-Slow: " + b"a" * 60)
              for i in range(SLOW_HEADERS)]
    crowd += [abandoned_cold(port, i, d, cold) for i, d in enumerate(state["cold"])]
    crowd = asyncio.gather(*crowd)
    await asyncio.sleep(1)
    warm = await warm_phase(port, state, 20)
    await crowd
    stop.set()
    await sampler
    return warm, lives, slow_lives, cold, samples


def life_summary(lives):
    closed = [t for what, t in lives if what == "closed"]
    return {"sockets": len(lives), "closed": len(closed),
            "still_open": sum(1 for what, _ in lives if what == "open"),
            "refused": sum(1 for what, _ in lives if what == "refused"),
            "max_life_s": round(max(closed), 2) if closed else None}


def peak_rss_mib(pid):
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM:")) // 1024


def upstream_sent(port, ca):
    context = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/stats", context=context, timeout=10) as reply:
        return json.load(reply)


async def main(port, pid, data_dir, state_path, upstream_port, ca, out):
    state = json.load(open(state_path))
    unloaded = await warm_phase(port, state, 10)
    warm, lives, slow_lives, cold, samples = await hostile_phase(port, pid, state)
    await fills_settled(port, 180)
    held_before = allocated_bytes(data_dir)
    lies = [await lie(port, kind, d) for kind, d in state["lies"].items()]
    await asyncio.sleep(2)
    sent = upstream_sent(upstream_port, ca)
    result = {
        "unloaded": unloaded, "loaded": warm,
        "idle_sockets": life_summary(lives), "slow_headers": life_summary(slow_lives),
        "cold_abandoned": {s: cold.count(s) for s in sorted(set(cold))},
        "cold_upstream_bytes": sum(sent.get(d, 0) for d in state["cold"]),
        "cold_cached": sum(cached(data_dir, d) for d in state["cold"]),
        "peak_rss_mib": max(peak_rss_mib(pid), max(s[0] for s in samples)), "peak_fds": max(s[1] for s in samples),
        "lies": lies, "lies_cached": [k for k, d in state["lies"].items() if cached(data_dir, d)],
        "tmp_files_after": len(os.listdir(os.path.join(data_dir, "tmp"))),
        "data_dir_change_mib": round((allocated_bytes(data_dir) - held_before) / (1 << 20), 1),
    }
    json.dump(result, open(out, "w"), indent=1)


if __name__ == "__main__":
    a = sys.argv
    asyncio.run(main(int(a[1]), int(a[2]), a[3], a[4], int(a[5]), a[6], a[7]))
