#!/usr/bin/env python3
"""How fast this disk makes small writes durable: appending vs overwriting zero-filled space.

Four threads each `pwrite` 20 KB at the next position of one file and `fdatasync`, as the log's
writer and syncers do. "append" grows the file; "prezero" overwrites zeros written ahead with
direct I/O by a fifth thread (as ferry-log's zero filling does). Prints syncs/s and p50 latency.

    python3 crates/ferry-log/benches/fsync_probe.py [DIR]   (default: a directory under target/)
"""
import mmap
import os
import sys
import threading
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../target/fsync-probe")
FILL = 4 << 20


def run(mode, threads=4, size=20000, secs=3):
    os.makedirs(DIR, exist_ok=True)
    path = os.path.join(DIR, "probe")
    if os.path.exists(path):
        os.remove(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    direct = os.open(path, os.O_RDWR | os.O_DIRECT)
    zeros = mmap.mmap(-1, FILL)  # page-aligned, zero
    allocated = [0]

    def extend():
        os.pwritev(direct, [zeros], allocated[0])
        os.fdatasync(direct)
        os.posix_fadvise(fd, allocated[0], FILL, os.POSIX_FADV_WILLNEED)
        allocated[0] += FILL

    if mode == "prezero":
        extend()
        extend()
    buf = b"x" * size
    position, lock, latencies = [0], threading.Lock(), []
    stop = time.time() + secs

    def writer():
        while time.time() < stop:
            with lock:
                at = position[0]
                position[0] += size
            start = time.perf_counter()
            os.pwrite(fd, buf, at)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - start)

    def filler():
        while time.time() < stop:
            if allocated[0] - position[0] < FILL:
                extend()
            else:
                time.sleep(0.001)

    workers = [threading.Thread(target=writer) for _ in range(threads)]
    if mode == "prezero":
        workers.append(threading.Thread(target=filler))
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    os.close(fd)
    os.close(direct)
    os.remove(path)
    latencies.sort()
    n = len(latencies)
    print(f"{mode:8} syncs/s={n / secs:6.0f} p50={latencies[n // 2] * 1e6:5.0f}us "
          f"MB/s={n * size / secs / 1e6:5.1f}", flush=True)


if __name__ == "__main__":
    for _ in range(3):
        for mode in ("append", "prezero"):
            run(mode)
