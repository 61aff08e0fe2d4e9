"""Kafka door benchmarks with librdkafka (confluent-kafka, kcat). Not a test: run by hand.

    cargo build --release -p ferry
    .venv/bin/python tests/clients/kafka/bench_kafka.py [--records 2000000] [--record-bytes 100]

Starts `target/release/ferry serve` (or $FERRY_BIN) on free ports in a temporary directory
(durability `always`: every acknowledged batch is `fdatasync`ed) and measures, each on a fresh
topic:

- produce: N records of `--record-bytes`, acks=all, linger.ms=5, idempotence off, one producer
  process by default. With confluent-kafka (`--producer python`, the default) it is timed
  inside the producer from the first `produce()` to the end of `flush()` (process start-up and
  imports are not counted). With `--producer kcat` (librdkafka from C, the same settings, the
  records read from a file of lines) the whole kcat process is timed, connect and metadata
  included.
- cold consume: a new consumer reads everything from the beginning, with `ferry bench kafka
  --consume-only` (a lean consumer that counts records from the batch headers, so the broker
  is what is measured), with kcat (C, assign mode, no group, `-c N`, see KCAT_CONSUME for its
  settings) and with confluent-kafka's batch API `consume(num_messages=10000)` in a new group.
  ferry bench and kcat are timed as whole runs (connect, metadata, fetches); the Python
  consumer from its first message to its last.
- `--only disk`: the disk's own sequential write bandwidth in the same directory, for
  comparison: 1 GiB written in chunks of 256 KiB to 16 MiB with an `fdatasync` after each chunk,
  and 1 GiB with one `fdatasync` at the end (what `dd bs=1M count=1024 conv=fdatasync` does).
- end-to-end latency at a fixed rate (10k records/s, acks=all, linger.ms=0): the producer
  process writes `time.time()` into each value; a consumer in a *separate process* (so the
  two never contend for one interpreter lock) long-polls with fetch.wait.max.ms=100 and
  fetch.min.bytes=1 and records `time.time()` minus that stamp. The first second is warm-up
  and not counted. Reports p50/p99/p99.9/max.
"""

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def ferry_binary():
    """The binary measured: $FERRY_BIN, else the release build."""
    return os.environ.get("FERRY_BIN", str(REPO / "target" / "release" / "ferry"))


def start_server(data_dir):
    args = [ferry_binary(), "serve", "--data-dir", data_dir, "--log-level", "warn,ferry_server=info"]
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


def produce_worker(bootstrap, topic, count, size, out):
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
    p.list_topics(topic, timeout=10)  # connect before the clock starts
    value = b"x" * size
    produce = p.produce
    poll = p.poll
    start = time.perf_counter()
    for _ in range(count):
        try:
            produce(topic, value)
        except BufferError:
            poll(0.001)
            produce(topic, value)
    left = p.flush(120)
    out.put((time.perf_counter() - start, left))


KCAT_PRODUCE = ["-X", "acks=all", "-X", "linger.ms=5", "-X", "batch.num.messages=10000",
                "-X", "batch.size=1000000", "-X", "queue.buffering.max.messages=1000000",
                "-X", "queue.buffering.max.kbytes=1048576", "-X", "enable.idempotence=false"]


def bench_produce_kcat(bootstrap, records, size, partitions, directory):
    """One kcat producer process over a file of `records` lines of `size` bytes."""
    kcat = shutil.which("kcat")
    if kcat is None:
        raise RuntimeError("--producer kcat needs kcat (apt-get install kcat)")
    topic = f"bench-produce-kcat-{size}"
    create(bootstrap, topic, partitions)
    lines = os.path.join(directory, "records.txt")
    with open(lines, "wb") as f:
        line = b"x" * size + b"\n"
        for written in range(0, records, 10_000):
            f.write(line * min(10_000, records - written))
    start = time.perf_counter()
    subprocess.run([kcat, "-P", "-b", bootstrap, "-t", topic, "-l", lines, *KCAT_PRODUCE],
                   check=True)
    elapsed = time.perf_counter() - start
    os.unlink(lines)
    return topic, records, elapsed


def bench_consume_ferry(bootstrap, topic):
    """`ferry bench kafka --consume-only`: (records, seconds)."""
    out = subprocess.run(
        [ferry_binary(), "bench", "kafka", "--bootstrap", bootstrap, "--topic", topic, "--consume-only",
         "--json"],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    report = json.loads(out)
    return report["consumed"], report["consume_s"]


def bench_produce(bootstrap, records, size, processes, partitions):
    topic = f"bench-produce-{size}"
    create(bootstrap, topic, partitions)
    q = mp.Queue()
    per = records // processes
    workers = [
        mp.Process(target=produce_worker, args=(bootstrap, topic, per, size, q))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    results = [q.get() for _ in workers]
    for w in workers:
        w.join()
    if any(left for _, left in results):
        raise RuntimeError("flush left records undelivered")
    return topic, per * processes, max(e for e, _ in results)


KCAT_CONSUME = ["-X", "fetch.max.bytes=4194304", "-X", "queued.min.messages=1000000",
                "-X", "queued.max.messages.kbytes=1048576"]


def bench_consume_kcat(bootstrap, topic, total):
    """kcat -c TOTAL rather than -e: detecting the end takes one empty long poll per partition
    (fetch.wait.max.ms, 500 ms by default), which would be timed as consuming."""
    kcat = shutil.which("kcat")
    if kcat is None:
        return None
    start = time.perf_counter()
    out = subprocess.run(
        [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-c", str(total), "-q",
         "-f", "x", *KCAT_CONSUME],
        check=True, stdout=subprocess.PIPE,
    ).stdout
    return len(out), time.perf_counter() - start


def bench_consume_python(bootstrap, topic, total):
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-cold-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            "queued.max.messages.kbytes": 1_048_576,
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


def e2e_consumer(bootstrap, topic, total, warmup_until, ready, out):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-e2e",
                  "fetch.wait.max.ms": 100, "fetch.min.bytes": 1, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    c.poll(0.5)
    ready.set()
    latencies = []
    seen = 0
    deadline = time.time() + 120
    while seen < total and time.time() < deadline:
        m = c.poll(0.2)  # returns as soon as one record is there
        if m is None or m.error():
            continue
        now = time.time()
        seen += 1
        sent = float(m.value()[:20])
        if sent >= warmup_until.value:
            latencies.append(now - sent)
    c.close()
    out.put(latencies)


def bench_e2e(bootstrap, rate, seconds):
    from confluent_kafka import Producer

    topic = "bench-e2e"
    create(bootstrap, topic, 1)
    total = rate * (seconds + 1)
    warmup_until = mp.Value("d", 1e18)
    ready = mp.Event()
    q = mp.Queue()
    consumer = mp.Process(target=e2e_consumer, args=(bootstrap, topic, total, warmup_until, ready, q))
    consumer.start()
    ready.wait(30)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    p.list_topics(topic, timeout=10)
    acks = []

    def acked(err, msg):
        if err is None:
            sent = float(msg.value()[:20])
            if sent >= warmup_until.value:
                acks.append(time.time() - sent)

    start = time.perf_counter()
    warmup_until.value = time.time() + 1.0
    for i in range(total):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        p.produce(topic, f"{time.time():<20.6f}".encode() + b"x" * 80, on_delivery=acked)
        p.poll(0)
    p.flush(30)
    latencies = q.get(timeout=150)
    consumer.join(30)
    return percentiles(latencies), percentiles(acks)


def percentiles(samples):
    """(count, p50, p99, p99.9, max) in milliseconds."""
    samples = sorted(samples)
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000
    return len(samples), pick(0.5), pick(0.99), pick(0.999), samples[-1] * 1000


def bench_disk(directory):
    """Sequential write bandwidth of the disk under `directory`: (label, MB/s) pairs."""
    path = os.path.join(directory, "seqwrite.bin")
    total = 1 << 30
    results = []
    for chunk in (256 << 10, 1 << 20, 4 << 20, 16 << 20, total):
        buf = b"x" * min(chunk, 16 << 20)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        start = time.perf_counter()
        written = 0
        while written < total:
            os.write(fd, buf)
            written += len(buf)
            if chunk < total:
                os.fdatasync(fd)
        os.fdatasync(fd)
        elapsed = time.perf_counter() - start
        os.close(fd)
        os.unlink(path)
        label = "one fdatasync at the end" if chunk == total else f"fdatasync every {chunk >> 10} KiB"
        results.append((label, total / elapsed / 1e6))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--record-bytes", type=int, default=100)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--producer", choices=["python", "kcat"], default="python",
                    help="confluent-kafka from Python, or kcat (librdkafka from C)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--only", choices=["produce", "e2e", "disk"],
                    help="run one part (produce includes consume)")
    args = ap.parse_args()
    size = args.record_bytes
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        if args.only == "disk":
            for label, mbs in bench_disk(d):
                print(f"disk: 1 GiB sequential write, {label}: {mbs:,.0f} MB/s", flush=True)
            return
        proc, bootstrap = start_server(d)
        try:
            if args.only != "e2e":
                if args.producer == "kcat":
                    topic, total, elapsed = bench_produce_kcat(bootstrap, args.records, size,
                                                               args.partitions, d)
                    producers = "1 kcat producer"
                else:
                    topic, total, elapsed = bench_produce(bootstrap, args.records, size,
                                                          args.processes, args.partitions)
                    producers = f"{args.processes} confluent-kafka producer(s)"
                print(f"produce: {total} x {size} B, acks=all, linger 5 ms, {producers}, "
                      f"{args.partitions} partitions: {total / elapsed:,.0f} records/s, "
                      f"{total * size / elapsed / 1e6:.1f} MB/s ({elapsed:.2f} s)", flush=True)
                n, consumed = bench_consume_ferry(bootstrap, topic)
                print(f"cold consume, ferry bench kafka --consume-only: {n} records: "
                      f"{n / consumed:,.0f} records/s, {n * size / consumed / 1e6:.1f} MB/s "
                      f"({consumed:.2f} s; {n / consumed / (total / elapsed):.2f}x the produce)",
                      flush=True)
                kcat = bench_consume_kcat(bootstrap, topic, total)
                if kcat:
                    n, elapsed = kcat
                    print(f"cold consume, kcat: {n} records: {n / elapsed:,.0f} records/s, "
                          f"{n * size / elapsed / 1e6:.1f} MB/s ({elapsed:.2f} s)", flush=True)
                n, elapsed = bench_consume_python(bootstrap, topic, total)
                print(f"cold consume, confluent-kafka consume(10000): {n} records: {n / elapsed:,.0f} records/s, "
                      f"{n * size / elapsed / 1e6:.1f} MB/s ({elapsed:.2f} s)", flush=True)
            if args.only != "produce":
                e2e, acks = bench_e2e(bootstrap, args.rate, args.seconds)
                for what, (n, p50, p99, p999, mx) in (("end-to-end", e2e), ("produce ack", acks)):
                    print(f"{what} at {args.rate} records/s, acks=all, {n} records: "
                          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, p99.9 {p999:.2f} ms, max {mx:.2f} ms", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
