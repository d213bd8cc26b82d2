#!/usr/bin/env python3
"""Kernel CPU time of one small TCP send on loopback: the floor under every delivery.

usage: loopback_send_cost.py [--call send|writev] [--sends 200000] [--conns 200] [--size 130]

A writer pinned to CPU 0 sends SIZE-byte messages round-robin over CONNS loopback TCP
connections (TCP_NODELAY, one syscall per message, as a relay writes one delivery); a reader
pinned to CPU 1 drains them with edge-triggered epoll. Prints the writer's user and system
CPU per send. On loopback the receiver's TCP processing (softirq) runs inside the sender's
syscall, so this is what the relay pays per write whatever it does in user space.
Bounded: SENDS messages to 127.0.0.1, then both processes exit.
"""

import argparse
import os
import select
import socket


def reader(port, conns, total_bytes):
    os.sched_setaffinity(0, {1})
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    ep = select.epoll()
    by_fd = {}
    for s in socks:
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLET)
        by_fd[s.fileno()] = s
    got = 0
    while got < total_bytes:
        for fd, _ in ep.poll(1.0):
            while True:
                try:
                    data = by_fd[fd].recv(65536)
                except BlockingIOError:
                    break
                got += len(data)
                if len(data) < 65536:
                    break
    os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--call", choices=["send", "writev"], default="send")
    ap.add_argument("--sends", type=int, default=200_000)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--size", type=int, default=130)
    args = ap.parse_args()
    message = b"x" * args.size
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(args.conns)
    port = listener.getsockname()[1]
    child = os.fork()
    if child == 0:
        reader(port, args.conns, args.sends * args.size)
    os.sched_setaffinity(0, {0})
    socks = [listener.accept()[0] for _ in range(args.conns)]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fds = [s.fileno() for s in socks]
    before = os.times()
    for i in range(args.sends):
        if args.call == "writev":
            os.writev(fds[i % args.conns], [message])
        else:
            socks[i % args.conns].send(message)
    after = os.times()
    os.waitpid(child, 0)
    user = (after.user - before.user) / args.sends * 1e6
    system = (after.system - before.system) / args.sends * 1e6
    print(f"{args.call}: {args.sends} sends of {args.size} B over {args.conns} connections: "
          f"{user + system:.2f} CPU-µs per send ({system:.2f} system, {user:.2f} user)")


if __name__ == "__main__":
    main()
