# Holds a relay at its descriptor limit and measures its CPU while it sits there.
import socket, subprocess, sys, time, os, re
bin_ = sys.argv[1]
p = subprocess.Popen(["bash", "-c", 'ulimit -n 64 && exec "$0" "$@"', bin_, "--bind", "127.0.0.1", "--port", "0", "--threads", "1", "--connect-rate", "0", "--connect-rate-per-ip", "0"], stderr=subprocess.PIPE, text=True)
addr = None
while addr is None:
    line = p.stderr.readline()
    m = re.search(r"listening on ws://([0-9.]+):(\d+)", line)
    if m: addr = (m.group(1), int(m.group(2)))
req = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
socks = []
for i in range(300):
    s = socket.create_connection(addr); s.sendall(req); socks.append(s)
time.sleep(1)
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
c0 = cpu(); time.sleep(5); c1 = cpu()
answered = 0
for s in socks:
    s.settimeout(0.2)
    try:
        if s.recv(16).startswith(b"HTTP/1.1"): answered += 1
    except Exception: pass
print(f"{bin_}: CPU while at the limit: {c1-c0:.2f} s in 5 s; flood connections answered: {answered}/300")
p.kill(); p.wait()
