"""Partial-message attack: N TLS connections each send ~1 MB of a fragmented binary message
(fin=0 fragments, never the last) and then keep it open with pings. Prints the server's RSS
(VmRSS of PID) before, after all are holding, and every 5 s for HOLD seconds, with how many
connections the server closed and how.

    wasmsock serve --route /echo=@echo --listen 127.0.0.1:18443 &
    python3 scripts/hardening/partial_messages.py 18443 $! 200 40
"""
import os, socket, ssl, sys, time, struct

port, pid, n, hold = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1]) // 1024
def frame(fin, op, payload):
    h = bytes([(0x80 if fin else 0) | op])
    n = len(payload)
    if n < 126: h += bytes([0x80 | n])
    elif n < 65536: h += bytes([0x80 | 126]) + struct.pack(">H", n)
    else: h += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return h + b"\0\0\0\0" + payload  # zero mask

ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
print(f"RSS before: {rss()} MiB", flush=True)
conns = []
chunk = b"x" * 100_000
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(f"GET /echo HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
    resp = s.recv(4096)
    assert b" 101 " in resp, resp
    s.sendall(frame(False, 2, chunk))
    for _ in range(9):
        s.sendall(frame(False, 0, chunk))
    conns.append(s)
time.sleep(1)
print(f"RSS with {n} connections holding ~1 MB partial messages: {rss()} MiB", flush=True)
start = time.time()
while time.time() - start < hold:
    time.sleep(5)
    codes = {}
    for i, s in enumerate(conns):
        if s is None:
            continue
        try:
            s.sendall(frame(True, 9, b"ping"))
            s.setblocking(False)
            try:
                data = s.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                data = None
            s.setblocking(True)
            code = None
            if data == b"":
                code = "eof"
            while data and len(data) >= 2:
                op, ln = data[0] & 0xF, data[1] & 0x7F
                if op == 8:
                    code = struct.unpack(">H", data[2:4])[0] if ln >= 2 else 1005
                    break
                data = data[2 + ln:]
            if code is not None:
                codes[code] = codes.get(code, 0) + 1
                conns[i] = None
        except OSError:
            conns[i] = None
            codes["reset"] = codes.get("reset", 0) + 1
    open_ = sum(1 for s in conns if s is not None)
    print(f"t+{int(time.time()-start)}s RSS {rss()} MiB, open: {open_}, closed now: {codes}", flush=True)
