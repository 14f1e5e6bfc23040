#!/usr/bin/env python3
"""Time a server's start: exec to TCP accept, and exec to the first HTTP 200 on a URL.

Usage: ready.py HOST PORT PATH LOGFILE -- CMD...

Starts CMD (stdout and stderr to LOGFILE), polls every 2 ms (at most 30 s) until a TCP
connect to HOST:PORT succeeds, then until GET PATH answers 200; then stops CMD by its
pid (TERM, then KILL after 10 s) and prints `tcp_ms=… http_ms=…`. Python 3 stdlib only.
"""

import http.client
import socket
import subprocess
import sys
import time

POLL = 0.002
LIMIT = 30.0


def main(argv):
    if len(argv) < 7 or argv[5] != "--":
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    host, port, path, logfile, cmd = argv[1], int(argv[2]), argv[3], argv[4], argv[6:]
    with open(logfile, "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        tcp = served = None
        try:
            while time.monotonic() - t0 < LIMIT and proc.poll() is None:
                try:
                    if tcp is None:
                        socket.create_connection((host, port), timeout=1).close()
                        tcp = time.monotonic() - t0
                    conn = http.client.HTTPConnection(host, port, timeout=1)
                    conn.request("GET", path)
                    ok = conn.getresponse().status == 200
                    conn.close()
                    if ok:
                        served = time.monotonic() - t0
                        break
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(POLL)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if tcp is None or served is None:
        print("ready.py: the server never answered", file=sys.stderr)
        return 1
    print(f"tcp_ms={tcp * 1000:.1f} http_ms={served * 1000:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
