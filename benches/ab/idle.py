# Opens N keep-alive connections to 127.0.0.1:PORT, sends one GET on each, reads the response,
# then holds them idle and prints the server's RSS before/after (KiB per idle connection).
import socket, sys, resource, time
port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
before = rss()
socks = []
req = b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n"
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(req)
    socks.append(s)
for s in socks:
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
time.sleep(1)
after = rss()
print(f"idle conns={n} rss_before={before}KiB rss_after={after}KiB per_conn={(after-before)/n*1024:.0f}B")
for s in socks: s.close()
