#!/usr/bin/env python3
"""A subscriber that stops reading: upgrades, subscribes to CHANNEL, then never reads again
(with a 4 KiB receive buffer), for HOLD seconds. Used to show that one stalled subscriber does
not slow the others (docs/BENCHMARKS.md). Loopback only.

usage: stall_subscriber.py PORT CHANNEL HOLD_SECONDS
"""
import base64
import os
import socket
import sys
import time


def main() -> None:
    port, channel, hold = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    time.sleep(0.2)
    s.recv(4096)  # the 101 and {"type":"connected"}
    payload = ('{"type":"subscribe","channel":"%s"}' % channel).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    time.sleep(hold)


if __name__ == "__main__":
    main()
