#!/usr/bin/env python3
"""Writes bench/hostile.sh's numbers as the "Hostile load" section of bench/RESULTS.md.

Usage: report.py OUT.json META.json RESULTS.md

The section replaces an earlier one in place (or is appended), so bench/run.sh's table and
this section live in one file however often either is rerun.
"""

import json
import sys

HEADING = "## Hostile load"


def targets(r, meta):
    """(target, measured, met) for each target the section reports."""
    deadline = meta["first_request_timeout_s"] + 1
    idle, slow = r["idle_sockets"], r["slow_headers"]
    ratio = r["loaded"]["p99_ms"] / r["unloaded"]["p99_ms"]
    clear = all(l["status"] >= 400 or l["body"] == "aborted" for l in r["lies"])
    return [
        ("warm-pull p99 under hostile load ≤ 2× unloaded", f"{ratio:.2f}×", ratio <= 2),
        ("peak RSS < 64 MiB", f"{r['peak_rss_mib']} MiB", r["peak_rss_mib"] < 64),
        ("no descriptor exhaustion (no failed accept)", f"{meta['accept_failures']} failed accepts, "
         f"peak {r['peak_fds']} descriptors of {meta['fd_limit']}", meta["accept_failures"] == 0),
        (f"every silent socket closed within the deadline ({deadline:.0f} s)",
         f"{idle['closed']} of {idle['sockets']} idle, {slow['closed']} of {slow['sockets']} slow-header; "
         f"longest {max(idle['max_life_s'] or 0, slow['max_life_s'] or 0)} s",
         idle["closed"] == idle["sockets"] and slow["closed"] == slow["sockets"]
         and max(idle["max_life_s"] or 0, slow["max_life_s"] or 0) <= deadline),
        ("every lying upstream: a clear error, nothing cached, no disk held",
         f"{'all' if clear else 'NOT all'} refused; cached: {r['lies_cached'] or 'none'}; "
         f"tmp files {r['tmp_files_after']}; data directory {r['data_dir_change_mib']:+} MiB",
         clear and not r["lies_cached"] and r["tmp_files_after"] == 0 and abs(r["data_dir_change_mib"]) < 1),
    ]


def section(r, meta):
    out = [HEADING, "",
           f"Written by `bench/hostile.sh` ({meta['date']}, regmirror {meta['rev']}, "
           f"{meta['cpus']} CPUs). Default limits; the mirror serves plain HTTP on 127.0.0.1 "
           "from a TLS upstream that is partly slow and partly lying (bench/hostile/upstream.py).", "",
           "| measurement | unloaded | under hostile load |", "|---|---|---|"]
    u, l = r["unloaded"], r["loaded"]
    out += [f"| warm pulls by 64 clients (manifest + 2 × 256 KiB) | {u['pulls']} | {l['pulls']} |",
            f"| warm pull p50 | {u['p50_ms']:.1f} ms | {l['p50_ms']:.1f} ms |",
            f"| warm pull p99 | {u['p99_ms']:.1f} ms | {l['p99_ms']:.1f} ms |", ""]
    out += ["| crowd | outcome |", "|---|---|"]
    for name in ("idle_sockets", "slow_headers"):
        s = r[name]
        out.append(f"| {name.replace('_', ' ')} | {s['sockets']} opened, {s['refused']} refused, {s['closed']} "
                   f"closed by the mirror (longest life {s['max_life_s']} s), {s['still_open']} still open |")
    out.append(f"| 300 cold blobs asked for and abandoned | statuses {r['cold_abandoned']}; upstream sent "
               f"{r['cold_upstream_bytes'] / (1 << 20):.0f} MiB; {r['cold_cached']} cached |")
    out += [f"| peak RSS, peak open descriptors | {r['peak_rss_mib']} MiB, {r['peak_fds']} |", ""]
    out += ["| lying upstream | mirror's answer | body | seconds |", "|---|---|---|---|"]
    out += [f"| {l['kind']} | {l['status']} | {l['body']} | {l['seconds']} |" for l in r["lies"]]
    out += ["", "Targets:", ""]
    out += [f"- {'met' if met else '**missed**'}: {t} — measured {m}" for t, m, met in targets(r, meta)]
    return "\n".join(out) + "\n"


def main(result_path, meta_path, md_path):
    r, meta = json.load(open(result_path)), json.load(open(meta_path))
    try:
        text = open(md_path).read()
    except FileNotFoundError:
        text = "# Benchmark results\n"
    start = text.find(HEADING)
    if start >= 0:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + text[end + 1:] if end >= 0 else text[:start]
    text = text.rstrip("\n") + "\n\n" + section(r, meta)
    open(md_path, "w").write(text)
    print(section(r, meta))


if __name__ == "__main__":
    main(*sys.argv[1:4])
