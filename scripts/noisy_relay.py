#!/usr/bin/env python3
"""A corrupting serial line for fault-injection tests.

Creates two pseudo-terminals, prints their paths (one per line, then "ready"), and copies bytes
between them. With probability P per chunk it injects random garbage bytes or flips a bit, in
either direction. Stops after --seconds or when killed.
"""
import argparse
import os
import random
import select
import sys
import time
import tty


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--p", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=600)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    ends = []
    for _ in range(2):
        master, slave = os.openpty()
        tty.setraw(slave)
        ends.append((master, os.ttyname(slave), slave))
    for _, name, _ in ends:
        print(name)
    print("ready", flush=True)
    a, b = ends[0][0], ends[1][0]
    peer = {a: b, b: a}
    injected = 0
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        readable, _, _ = select.select([a, b], [], [], 0.5)
        for fd in readable:
            try:
                data = bytearray(os.read(fd, 4096))
            except OSError:
                continue
            if data and rng.random() < args.p:
                injected += 1
                if rng.random() < 0.5:
                    i = rng.randrange(len(data))
                    data[i] ^= 1 << rng.randrange(8)
                else:
                    data[rng.randrange(len(data) + 1):0] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
            try:
                os.write(peer[fd], bytes(data))
            except OSError:
                pass
    print(f"injected {injected}", file=sys.stderr)


if __name__ == "__main__":
    main()
