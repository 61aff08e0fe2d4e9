"""Kafka door benchmarks with librdkafka (confluent-kafka). Not a test: run by hand.

    cargo build --release -p ferry
    .venv/bin/python tests/clients/kafka/bench_kafka.py [--records 2000000] [--processes 2]

Starts `target/release/ferry serve` (or $FERRY_BIN) on free ports in a temporary directory and
measures, each on a fresh topic:

- produce: 100-byte records, acks=all, linger.ms=5, idempotence off, N producer processes;
- cold consume: a new consumer reads everything from the beginning;
- end-to-end latency at a fixed rate (10k records/s): produce timestamp in the value, consumer
  measures delivery time; reports p50/p99/max.
"""

import argparse
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def start_server(data_dir):
    binary = os.environ.get("FERRY_BIN", str(REPO / "target" / "release" / "ferry"))
    args = [binary, "serve", "--data-dir", data_dir, "--log-level", "warn,ferry_server=info"]
    for door in ("http", "aws", "kafka"):
        args += [f"--{door}-addr", "127.0.0.1:0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    kafka = None
    for line in proc.stdout:
        m = re.search(r'door="?kafka"? addr=([0-9.:]+)', line)
        if m:
            kafka = m.group(1)
        if "ready" in line and kafka:
            return proc, kafka
    raise RuntimeError("server did not start")


def create(bootstrap, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic].result(timeout=30)


def produce_worker(bootstrap, topic, count, out):
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "enable.idempotence": False,
        }
    )
    value = b"x" * 100
    produce = p.produce
    start = time.perf_counter()
    for _ in range(count):
        try:
            produce(topic, value)
        except BufferError:
            p.poll(0.001)
            produce(topic, value)
    p.flush(120)
    out.put(time.perf_counter() - start)


def bench_produce(bootstrap, records, processes, partitions):
    topic = "bench-produce"
    create(bootstrap, topic, partitions)
    q = mp.Queue()
    per = records // processes
    start = time.perf_counter()
    workers = [mp.Process(target=produce_worker, args=(bootstrap, topic, per, q)) for _ in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    total = per * processes
    return topic, total, elapsed


def bench_consume(bootstrap, topic, total):
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-cold",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
        }
    )
    c.subscribe([topic])
    n = 0
    start = None
    while n < total:
        msgs = c.consume(10000, 1.0)
        if msgs and start is None:
            start = time.perf_counter()
        n += sum(1 for m in msgs if not m.error())
    elapsed = time.perf_counter() - start
    c.close()
    return n, elapsed


def bench_e2e(bootstrap, rate, seconds):
    import threading

    from confluent_kafka import Consumer, Producer

    topic = "bench-e2e"
    create(bootstrap, topic, 1)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-e2e", "auto.offset.reset": "latest",
                  "fetch.wait.max.ms": 100, "fetch.min.bytes": 1})
    c.subscribe([topic])
    while not c.assignment():
        c.poll(0.1)
    latencies = []
    total = rate * seconds
    done = threading.Event()

    def consume():
        while len(latencies) < total and not done.is_set():
            m = c.poll(0.2)  # returns as soon as one record is there
            if m is not None and not m.error():
                latencies.append(time.time() - float(m.value()[:20]))

    t = threading.Thread(target=consume)
    t.start()
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    start = time.perf_counter()
    for i in range(total):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        p.produce(topic, f"{time.time():<20.6f}".encode() + b"x" * 80)
        p.poll(0)
    p.flush(30)
    t.join(30)
    done.set()
    c.close()
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    return len(latencies), pick(0.5), pick(0.99), latencies[-1] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proc, bootstrap = start_server(d)
        try:
            topic, total, elapsed = bench_produce(bootstrap, args.records, args.processes, args.partitions)
            print(f"produce: {total} x 100 B, acks=all, linger 5 ms, {args.processes} producers, "
                  f"{args.partitions} partitions: {total / elapsed:,.0f} records/s, "
                  f"{total * 100 / elapsed / 1e6:.1f} MB/s ({elapsed:.2f} s)")
            n, elapsed = bench_consume(bootstrap, topic, total)
            print(f"cold consume: {n} records: {n / elapsed:,.0f} records/s, {n * 100 / elapsed / 1e6:.1f} MB/s")
            n, p50, p99, mx = bench_e2e(bootstrap, args.rate, args.seconds)
            print(f"end-to-end at {args.rate} records/s, acks=all, {n} records: "
                  f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {mx:.2f} ms")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
