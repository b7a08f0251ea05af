#!/usr/bin/env python3
"""Measures whether the server's memory comes back after a burst of connections.

Starts the release binary on 127.0.0.1 (port 0, 2 workers, the demo site), then runs CYCLES
cycles: open CONNS connections at once (each sends one keep-alive GET and reads the answer, so
every connection holds its buffers), close them all, wait for the server to settle. Prints VmRSS
(from /proc/PID/status) before, at the peak of each cycle, and 2 s and 5 s after it; bounded and
self-stopping, loopback only. SMAPS=1 also lists the five mappings holding the most resident
memory after each cycle (a worker's glibc arena is a 64 MiB-aligned anonymous mapping);
SHOW_STDERR=1 echoes the server's stderr. Usage: scripts/rss-cycles.py [BINARY]
(env CONNS=10000 CYCLES=3 ENGINE=uring PATHS=/,/index.html).
"""
import os, re, socket, subprocess, sys, tempfile, threading, time, resource

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/uring-httpd"
conns = int(os.environ.get("CONNS", "10000"))
cycles = int(os.environ.get("CYCLES", "3"))
engine = os.environ.get("ENGINE", "uring")
paths = os.environ.get("PATHS", "/,/index.html").split(",")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if hard < conns + 100:
    sys.exit(f"need {conns + 100} descriptors for the client, the hard limit is {hard}")

def rss_kib(pid):
    text = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))

root = os.path.abspath("root")
with tempfile.TemporaryDirectory() as d:
    cfg = os.path.join(d, "uring.toml")
    with open(cfg, "w") as f:
        f.write(f'[server]\nhost = "127.0.0.1"\nport = 0\nworkers = 2\nengine = "{engine}"\n'
                f'[files]\nroot = "{root}"\n[limits]\nkeep_alive_timeout_secs = 60\n'
                f'[log]\naccess = "off"\nlevel = "info"\n')
    server = subprocess.Popen([binary, "--config", cfg], stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in server.stderr:
            m = re.search(r"listening on http://[^:]+:(\d+)/", line)
            if m:
                port = int(m.group(1))
                break
        assert port, "server did not start"
        # Keep reading stderr so the server never blocks on a full pipe; SHOW_STDERR=1 echoes it.
        def drain():
            for line in server.stderr:
                if os.environ.get("SHOW_STDERR") == "1":
                    sys.stderr.write(line)
        threading.Thread(target=drain, daemon=True).start()
        time.sleep(0.5)
        print(f"engine {engine}, {conns} connections x {cycles} cycles")
        print(f"start      VmRSS {rss_kib(server.pid):>8} KiB")
        for cycle in range(1, cycles + 1):
            socks = []
            for i in range(conns):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                path = paths[i % len(paths)]
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                socks.append(s)
            for s in socks:
                got = s.recv(65536)
                assert got.startswith(b"HTTP/1.1 200"), got[:40]
            peak = rss_kib(server.pid)
            for s in socks:
                s.close()
            time.sleep(2)
            soon = rss_kib(server.pid)
            time.sleep(3)
            if os.environ.get("SMAPS") == "1":
                # The mappings holding the most resident memory, to see where it stays.
                rows, cur = [], None
                for line in open(f"/proc/{server.pid}/smaps"):
                    parts = line.split()
                    if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                        cur = [line.strip()[:90], 0]
                        rows.append(cur)
                    elif parts[0] == "Rss:":
                        cur[1] = int(parts[1])
                for name, kib in sorted(rows, key=lambda r: -r[1])[:5]:
                    print(f"    {kib:>8} KiB  {name}")
            print(f"cycle {cycle}    peak {peak:>8} KiB, 2 s after {soon:>8} KiB, 5 s after {rss_kib(server.pid):>8} KiB")
    finally:
        server.terminate()
        server.wait(timeout=30)
