#!/usr/bin/env python3
"""The mixed half of scripts/soak.sh: for SECS seconds, a few client threads against one server
on 127.0.0.1, each doing one kind of thing over and over, checking every answer:

  pipelined  10 requests in one write (hits, 404s, a HEAD), answers read and checked in order
  slow       a big file read 16 KiB at a time with pauses (a slow reader), to the last byte
  reset      half a request, then a close with SO_LINGER 0 (the server sees a reset)
  range      single ranges of the big file (206, exact length), a bad one (416), If-None-Match 304
  big        the big and the medium file in full, lengths checked
  bad        malformed heads and a 405 (answered, connection closed)

Prints one JSON line: counts of checked answers per kind and of unexpected ones, with the first
few unexpected ones described. Loopback only; stops by itself. Usage: soak-mix.py PORT SECS
BIG_LEN MEDIUM_LEN
"""
import json, socket, struct, sys, threading, time

port, secs, big_len, medium_len = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
deadline = time.monotonic() + secs
lock = threading.Lock()
counts = {}
problems = []


def note(kind, ok, what=""):
    with lock:
        key = kind if ok else kind + "_unexpected"
        counts[key] = counts.get(key, 0) + 1
        if not ok and len(problems) < 10:
            problems.append(f"{kind}: {what}")


def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    return s


def read_response(f, head_only=False):
    """Reads one response from a file-like socket; returns (status, headers, body length)."""
    line = f.readline()
    if not line:
        return None
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        k, v = h.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = 0
    if not head_only and status not in (204, 304):
        want = int(headers.get("content-length", "0"))
        while n < want:
            chunk = f.read(min(65536, want - n))
            if not chunk:
                break
            n += len(chunk)
    return status, headers, n


def pipelined():
    reqs = [("GET", "/", 200), ("GET", "/missing.html", 404), ("HEAD", "/index.html", 200),
            ("GET", "/medium.png", 200), ("GET", "/.hidden", 404)] * 2
    while time.monotonic() < deadline:
        try:
            with connect() as s:
                f = s.makefile("rb")
                raw = "".join(f"{m} {p} HTTP/1.1\r\nHost: t\r\n\r\n" for m, p, _ in reqs)
                s.sendall(raw.encode())
                for m, p, want in reqs:
                    r = read_response(f, head_only=(m == "HEAD"))
                    note("pipelined", r is not None and r[0] == want, f"{m} {p}: {r and r[0]}")
        except OSError as e:
            note("pipelined", False, repr(e))


def slow():
    while time.monotonic() < deadline:
        try:
            with connect() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                s.sendall(b"GET /big.png HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                got = b""
                while True:
                    chunk = s.recv(16384)
                    if not chunk:
                        break
                    got += chunk
                    time.sleep(0.002)
                head, _, body = got.partition(b"\r\n\r\n")
                note("slow", head.startswith(b"HTTP/1.1 200") and len(body) == big_len,
                     f"{head[:20]!r} {len(body)}")
        except OSError as e:
            note("slow", False, repr(e))


def reset():
    while time.monotonic() < deadline:
        try:
            s = connect()
            s.sendall(b"GET /index.html HTTP/1.1\r\nHo")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            note("reset", True)
            time.sleep(0.01)
        except OSError as e:
            note("reset", False, repr(e))


def ranges():
    etag = None
    while time.monotonic() < deadline:
        try:
            with connect() as s:
                f = s.makefile("rb")
                s.sendall(b"GET /big.png HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-1999\r\n\r\n")
                r = read_response(f)
                note("range", r and r[0] == 206 and r[2] == 1000, f"{r and r[:1]}")
                if r:
                    etag = r[1].get("etag")
                s.sendall(f"GET /big.png HTTP/1.1\r\nHost: t\r\nRange: bytes=-100\r\n\r\n".encode())
                r = read_response(f)
                note("range", r and r[0] == 206 and r[2] == 100, f"{r and r[:1]}")
                s.sendall(f"GET /big.png HTTP/1.1\r\nHost: t\r\nRange: bytes={big_len}-\r\n\r\n".encode())
                r = read_response(f)
                note("range", r and r[0] == 416, f"{r and r[:1]}")
                s.sendall(f"GET /big.png HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n".encode())
                r = read_response(f)
                note("range", r and r[0] == 304, f"{r and r[:1]}")
        except OSError as e:
            note("range", False, repr(e))


def big():
    while time.monotonic() < deadline:
        try:
            with connect() as s:
                f = s.makefile("rb")
                for path, want in (("/big.png", big_len), ("/medium.png", medium_len)):
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                    r = read_response(f)
                    note("big", r and r[0] == 200 and r[2] == want, f"{path}: {r and (r[0], r[2])}")
        except OSError as e:
            note("big", False, repr(e))


def bad():
    cases = [(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
             (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
             (b"BREW /pot HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405),
             (b"GET /../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", 400)]
    while time.monotonic() < deadline:
        for raw, want in cases:
            try:
                with connect() as s:
                    s.sendall(raw)
                    r = read_response(s.makefile("rb"))
                    note("bad", r and r[0] == want, f"{raw[:20]!r}: {r and r[0]}")
            except OSError as e:
                note("bad", False, repr(e))
        time.sleep(0.01)


threads = [threading.Thread(target=t) for t in (pipelined, slow, reset, ranges, big, bad)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"counts": counts, "problems": problems}))
