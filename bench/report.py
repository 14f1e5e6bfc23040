#!/usr/bin/env python3
"""Turn bench/run.sh's samples into the results table and bench/RESULTS.md.

Usage: report.py RESULTS.tsv META.json OUT.md

RESULTS.tsv holds one sample a line: key, value, unit. Samples of one key are reduced to
the best (times: lowest; rates: highest) or, for peak RSS and upstream bytes, the worst
(highest), since those targets are ceilings. The table goes to stdout and, with the
machine, versions, targets (met or missed), micro-benchmarks and every raw sample, to
OUT.md. Python 3 standard library only.
"""

import json
import sys
from collections import defaultdict

MIB = 1 << 20
SERVERS = ("regmirror", "distribution", "nginx", "direct")
LOWER_IS_BETTER = {"s", "ms", "ns", "ms CPU"}
WORST_CASE = {"KiB", "x", "GETs", "pulls"}

# label, unit shown, {server: key}, targets: one (against, op, bound, text), a list of them, or None.
# `against` is a server (the ratio regmirror / it) or "abs" (regmirror's own value).
ROWS = []


def row(label, unit, keys, target=None):
    targets = target if isinstance(target, list) else [target] if target else []
    ROWS.append((label, unit, keys, targets))


def per_server(fmt, servers=SERVERS):
    return {s: fmt.format(s=s) for s in servers}


for key, size in (("small", "20 MiB"), ("medium", "60 MiB, 5 layers"), ("big", "1 GiB")):
    row(f"cold pull, {size}", "s", per_server("cold." + key + ".{s}", ("regmirror", "distribution", "direct")),
        ("direct", "<=", 1.10, "cold pull ≤ 1.10× direct"))
for key, size in (("small", "20 MiB"), ("medium", "60 MiB, 5 layers"), ("big", "1 GiB")):
    row(f"warm pull, {size}", "s", per_server("warm." + key + ".{s}"),
        ("direct", "<=", 1.02, "warm pull ≤ 1.02× direct"))
row("GET 1 GiB blob, plain HTTP", "MB/s", per_server("get.http.{s}"),
    ("nginx", ">=", 1.0, "single GET ≥ 1.0× nginx, plain HTTP"))
row("GET 1 GiB blob, TLS HTTP/1.1", "MB/s", per_server("get.tls.{s}", SERVERS[:3]),
    ("nginx", ">=", 0.9, "single GET ≥ 0.9× nginx over TLS"))
row("GET 1 GiB blob, TLS HTTP/2", "MB/s", per_server("get.h2.{s}", SERVERS[:3]),
    ("nginx", ">=", 0.9, "single GET ≥ 0.9× nginx over TLS (h2)"))
row("GET 1 GiB blob, cold (fills the cache)", "MB/s",
    per_server("get.cold.{s}", ("regmirror", "distribution", "direct")),
    ("direct", ">=", 0.6, "cold 1 GiB GET ≥ 0.6× a direct GET from the upstream"))
row("server CPU for one 1 GiB GET, plain", "ms CPU", per_server("cpu.get.http.{s}"))
row("server CPU for one 1 GiB GET, TLS HTTP/1.1", "ms CPU", per_server("cpu.get.tls.{s}", SERVERS[:3]))
row("server CPU for one 1 GiB GET, cold", "ms CPU",
    per_server("cpu.get.cold.{s}", ("regmirror", "distribution", "direct")))
row("HEAD manifest by tag, 64 conns", "req/s", per_server("head64.{s}", SERVERS[:3]),
    [("distribution", ">=", 5.0, "HEAD manifest ≥ 5× distribution"),
     ("nginx", ">=", 0.8, "HEAD manifest ≥ 0.8× nginx")])
row("GET 1 MiB blob, 64 conns", "req/s", per_server("get1m64.{s}", SERVERS[:3]))
row("GET 1 MiB blob, 16 conns", "req/s", per_server("get1m16.{s}", SERVERS[:3]),
    ("nginx", ">=", 0.8, "16-conn 1 MiB GETs ≥ 0.8× nginx"))
row("16 concurrent cold pulls (60 MiB): wall", "s", per_server("conc.wall.{s}", ("regmirror", "distribution", "direct")))
row("16 concurrent cold pulls: upstream blob bytes", "× image",
    per_server("conc.upstream.{s}", ("regmirror", "distribution", "direct")),
    ("abs", "==", 1.0, "concurrent cold pulls fetch the image from the upstream exactly once"))
row("16 concurrent cold pulls: failed pulls", "pulls",
    per_server("conc.failed.{s}", ("regmirror", "distribution", "direct")),
    ("abs", "==", 0, "16 concurrent cold pulls all succeed"))
row("16 concurrent cold pulls: upstream blob GETs", "GETs",
    per_server("conc.upstream_gets.{s}", ("regmirror", "distribution", "direct")))
# A fleet of three regmirror instances, in regmirror's column.
row("16 concurrent cold pulls over a 3-instance fleet: wall", "s",
    {"regmirror": "conc.wall.fleet", "direct": "conc.wall.direct"})
row("16 concurrent cold pulls over a 3-instance fleet: upstream blob bytes", "× image",
    {"regmirror": "conc.upstream.fleet"},
    ("abs", "==", 1.0, "a fleet's concurrent cold pulls fetch the image from the upstream exactly once"))
row("16 concurrent cold pulls over a 3-instance fleet: failed pulls", "pulls",
    {"regmirror": "conc.failed.fleet"}, ("abs", "==", 0, "a fleet's 16 concurrent cold pulls all succeed"))
# On a one-node Garage bucket (step 8), in regmirror's column beside the local-disk mirror.
row("GET 1 GiB blob, cold through a bucket (fills it)", "MB/s",
    {"regmirror": "get.cold.bucket", "direct": "get.cold.direct"})
row("GET 1 GiB blob from the bucket, empty data directory", "MB/s",
    {"regmirror": "get.frombucket.regmirror", "direct": "get.http.direct", "nginx": "get.http.nginx"})
row("GET 1 GiB blob, warm from the data directory (as above)", "MB/s",
    {"regmirror": "get.http.regmirror", "direct": "get.http.direct"})
row("peak RSS, 1 GiB cold GET through a bucket and its upload", "MiB", {"regmirror": "rss.getcold.bucket"},
    ("abs", "<", 64, "peak RSS for a cold 1 GiB blob through S3 < 64 MiB"))
row("peak RSS, 1 GiB GET from the bucket", "MiB", {"regmirror": "rss.getfrombucket.regmirror"})
row("cold pull, 60 MiB, through a bucket", "s", {"regmirror": "coldbucket.medium.regmirror", "direct": "cold.medium.direct"})
row("pull, 60 MiB, from the bucket into an empty data directory", "s",
    {"regmirror": "frombucket.medium.regmirror", "direct": "cold.medium.direct"})
row("16 concurrent cold pulls over a 3-instance fleet on one bucket: wall", "s",
    {"regmirror": "conc.wall.fleetbucket", "direct": "conc.wall.direct"})
row("16 concurrent cold pulls over a 3-instance fleet on one bucket: upstream blob bytes", "× image",
    {"regmirror": "conc.upstream.fleetbucket"},
    ("abs", "==", 1.0, "a fleet on one bucket fetches the image from the upstream exactly once"))
row("one cold pull (1 GiB): upstream blob bytes", "× image",
    per_server("upstream.cold.big.{s}", ("regmirror", "distribution")))
row("RSS just before the 1 GiB cold pull", "MiB", per_server("rss.base.cold.{s}", ("regmirror", "distribution")))
row("peak RSS, 1 GiB cold pull", "MiB", per_server("rss.cold.{s}", ("regmirror", "distribution")),
    ("abs", "<", 20, "peak RSS < 20 MiB streaming 1 GiB cold"))
row("peak RSS, 1 GiB warm pull", "MiB", per_server("rss.warm.{s}", ("regmirror", "distribution")),
    ("abs", "<", 20, "peak RSS < 20 MiB streaming 1 GiB warm"))
row("peak RSS, 1 GiB cold GET", "MiB", {"regmirror": "rss.getcold.regmirror"},
    ("abs", "<", 20, "peak RSS < 20 MiB streaming 1 GiB cold (GET)"))
row("peak RSS, 1 GiB GETs, plain", "MiB", {"regmirror": "rss.get.regmirror"},
    ("abs", "<", 20, "peak RSS < 20 MiB streaming 1 GiB warm (GETs)"))
row("peak RSS, 1 GiB GETs, TLS", "MiB", {"regmirror": "rss.gettls.regmirror"},
    ("abs", "<", 20, "peak RSS < 20 MiB streaming 1 GiB warm (TLS GETs)"))
row("restart, 100k blobs: exec → first 200", "ms", {"regmirror": "ready.http_ms"},
    ("abs", "<", 2000, "restart with 100k blobs ready in < 2 s"))
row("restart, 100k blobs: exec → TCP accept", "ms", {"regmirror": "ready.tcp_ms"})
row("restart, 100k blobs: index_ms (log)", "ms", {"regmirror": "ready.index_ms"})


def load(path):
    samples, units = defaultdict(list), {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[1]:
                samples[parts[0]].append(float(parts[1]))
                units[parts[0]] = parts[2]
    return samples, units


def reduce(values, unit):
    if unit in LOWER_IS_BETTER:
        return min(values)
    return max(values)


def spread(values):
    """(worst - best) / best, as a percentage."""
    lo, hi = min(values), max(values)
    return 0.0 if lo == 0 else (hi - lo) / lo * 100


def shown(value, unit):
    if value is None:
        return "–"
    if unit == "MiB":
        return f"{value:.1f}"
    if unit == "s":
        return f"{value:.3f}"
    if unit == "× image":
        return f"{value:.2f}"
    if unit in ("MB/s", "req/s", "ms", "ms CPU", "GETs", "pulls"):
        return f"{value:,.0f}"
    return f"{value:g}"


def check(op, ratio, bound):
    return {"<=": ratio <= bound, ">=": ratio >= bound, "<": ratio < bound, "==": abs(ratio - bound) < 1e-9}[op]


def build(samples, units):
    table, targets, noise = [], [], []
    for label, unit, keys, row_targets in ROWS:
        values = {}
        for server, key in keys.items():
            if key in samples:
                v = reduce(samples[key], units[key])
                values[server] = v / 1024 if units[key] == "KiB" else v
                if len(samples[key]) > 1:
                    noise.append((spread(samples[key]), f"{label} · {server}"))
        rm = values.get("regmirror")
        ratios = {}
        for other in ("distribution", "nginx", "direct"):
            if rm is not None and values.get(other) and unit != "pulls":
                ratios[other] = rm / values[other]
        verdicts, target_texts = [], []
        for against, op, bound, text in row_targets:
            got = rm if against == "abs" else ratios.get(against)
            if rm is not None and got is not None:
                met = check(op, got, bound)
                verdicts.append("met" if met else "**missed**")
                measured = f"{shown(rm, unit)} {unit}" if against == "abs" else f"{got:.2f}× {against}"
                targets.append((text, measured, met))
            sym = {"<=": "≤", ">=": "≥", "<": "<", "==": "="}[op]
            target_texts.append(f"{sym} {bound:g} {unit}" if against == "abs" else f"{sym} {bound:g}× {against}")
        verdict, target_text = ", ".join(verdicts), ", ".join(target_texts)
        table.append(
            [label, unit]
            + [shown(values.get(s), unit) for s in SERVERS]
            + [f"{ratios[o]:.2f}×" if o in ratios else "–" for o in ("distribution", "nginx", "direct")]
            + [target_text, verdict]
        )
    return table, targets, noise


def markdown(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def micro(samples):
    rows = []
    hash_ns = samples.get("micro.hash/sha256_64MiB")
    sum_ns = samples.get("micro.sha256sum_64MiB")
    for key in sorted(samples):
        if key.startswith("micro.parse/"):
            rows.append([key[len("micro."):], f"{min(samples[key]):,.0f} ns", ""])
    mbs = lambda ns: 64 * MIB / (ns / 1e9) / 1e6
    if hash_ns:
        rows.append(["hash/sha256_64MiB (regmirror::digest::Hasher)", f"{min(hash_ns) / 1e6:,.1f} ms",
                     f"{mbs(min(hash_ns)):,.0f} MB/s"])
    if sum_ns:
        rows.append(["sha256sum, 64 MiB file in page cache", f"{min(sum_ns) / 1e6:,.1f} ms",
                     f"{mbs(min(sum_ns)):,.0f} MB/s"])
    if hash_ns and sum_ns:
        rows.append(["Hasher / sha256sum", "", f"{min(sum_ns) / min(hash_ns):.2f}× the throughput"])
    return rows


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    samples, units = load(argv[1])
    meta = json.load(open(argv[2]))
    table, targets, noise = build(samples, units)
    header = ["measurement", "unit", "regmirror", "distribution proxy", "nginx", "direct (upstream)",
              "rm / distribution", "rm / nginx", "rm / direct", "target", ""]
    text = markdown(header, table)
    print(text)
    missed = [t for t in targets if not t[2]]
    print(f"\ntargets: {len(targets) - len(missed)} met, {len(missed)} missed")
    for t in missed:
        print(f"  missed: {t[0]} (measured {t[1]})")

    noise.sort(reverse=True)
    md = [
        "# Benchmark results",
        "",
        "Written by `bench/run.sh` (see README, \"Benchmarks\"); rerun it rather than editing this file.",
        "Ratios are regmirror's value over the other's: for times (s, ms) lower is better, for",
        "rates (MB/s, req/s) higher is better. Everything ran on 127.0.0.1 in one run.",
        "",
        "## Machine and versions",
        "",
        f"- date: {meta['date']} (run took {meta['duration_s']} s)",
        f"- CPU: {meta['nproc']} × {meta['cpu']}; kernel {meta['kernel']}",
        f"- regmirror: {meta['regmirror']} (`cargo build --release`, {meta['rustc']})",
        f"- distribution: {meta['distribution']}",
        f"- nginx: {meta['nginx']}",
        f"- skopeo: {meta['skopeo']}; {meta['curl']}; {meta['wrk']}",
        f"- load average at start: {meta['loadavg_start']}; at end: {meta['loadavg_end']}",
        "",
        "```",
        meta["free"],
        "```",
        "",
        "## Results",
        "",
        f"Best of {meta['reps']} for warm pulls, GETs and request rates ({meta['seconds']} s runs); "
        f"cold pulls and the concurrent pulls: best of {meta['cold_reps']} rounds, each from empty caches. "
        "Peak RSS and upstream bytes: the worst sample.",
        "",
        text,
        "",
        "## Targets",
        "",
    ]
    md += [f"- {'met' if met else '**missed**'}: {text_} — measured {measured}" for text_, measured, met in targets]
    md += [
        "",
        "## Micro-benchmarks (criterion, `benches/hot_paths.rs`)",
        "",
        markdown(["benchmark", "time (best)", "throughput"], micro(samples)),
        "",
        "## Noise",
        "",
        "The machine has 2 cores, shared with other builds and tests while this ran, so every",
        "number is noisy: each is the best of several runs, and a verdict within about 10% of its",
        "bound can flip from one run to the next; trust a miss that repeats across runs. Skopeo",
        "itself bounds the 1 GiB pulls (about 200 MB/s here, against 1-2 GB/s for curl), which",
        "narrows the pull ratios. The widest spreads between the best and the worst sample of one",
        "cell:",
        "",
    ]
    md += [f"- {s:.0f}%: {name}" for s, name in noise[:8]]
    profiles = meta.get("profiles", {})
    if profiles:
        md += ["", "## Profiles", "",
               "`perf record -F 999 -g` of regmirror alone during each run named below (1 GiB GETs with",
               "curl, 1 MiB GETs with wrk); top symbols by own time, kernel time included.", ""]
    for name, path in sorted(profiles.items()):
        with open(path) as f:
            md += [f"{name}:", "", "```", f.read().rstrip(), "```", ""]
    md += ["", "<details><summary>Every sample</summary>", "", "```"]
    md += [f"{k}\t{units[k]}\t" + " ".join(f"{v:g}" for v in vs) for k, vs in sorted(samples.items())]
    md += ["```", "", "</details>", ""]
    md += kept_sections(argv[3])
    with open(argv[3], "w") as f:
        f.write("\n".join(md))
    return 0


def kept_sections(path):
    """The sections other scripts write into the same file (bench/hostile.sh's), kept as
    they were: this run does not measure them."""
    try:
        text = open(path).read()
    except FileNotFoundError:
        return []
    start = text.find("\n## Hostile load")
    if start < 0:
        return []
    end = text.find("\n## ", start + 1)
    return text[start + 1:end if end >= 0 else len(text)].rstrip("\n").split("\n") + [""]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
