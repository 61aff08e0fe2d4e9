"""kill -9 during idempotent produce, then restart on the same port.

Invariants: every acknowledged record is present exactly once, at the offset it was
acknowledged with; no record is duplicated (the producer's retries after the restart are
recognised by producer id and sequence); committed offsets survive.
"""

import subprocess
import sys
import time

import pytest

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from kafkalib import wait_for

TOTAL = 4000

PRODUCER = """
import sys
from confluent_kafka import Producer
bootstrap, topic, total, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
log = open(out, "w", buffering=1)
errors = []
def cb(err, msg):
    if err:
        errors.append(str(err))
    else:
        log.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\\n")
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
              "linger.ms": 5, "message.timeout.ms": 120000, "reconnect.backoff.max.ms": 500})
for i in range(total):
    while True:
        try:
            p.produce(topic, key=str(i % 7).encode(), value=f"v{i}".encode(), on_delivery=cb)
            break
        except BufferError:
            p.poll(0.1)
    p.poll(0)
    if i % 10 == 0:
        import time; time.sleep(0.005)
left = p.flush(150)
print(f"left={left} errors={len(errors)} {errors[:3]}", flush=True)
"""


@pytest.mark.parametrize("direct_io", ["false", "true"])
def test_kill9_during_idempotent_produce(ferry_factory, tmp_path, topic_name, direct_io):
    """Also with `direct.io=true`, where partitions write with direct I/O."""
    f = ferry_factory(doors=("http", "kafka"))
    bootstrap = f.doors["kafka"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(topic_name, num_partitions=3, config={"direct.io": direct_io})
    admin.create_topics([topic])[topic_name].result(timeout=10)
    res = ConfigResource(ResourceType.TOPIC, topic_name)
    assert admin.describe_configs([res])[res].result(timeout=10)["direct.io"].value == direct_io

    # A committed offset that must survive the crash.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-g", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic_name, 1, 0)], asynchronous=False)
    c.close()

    acked = tmp_path / "acked.txt"
    child = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, bootstrap, topic_name, str(TOTAL), str(acked)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: acked.exists() and len(acked.read_text().splitlines()) >= 800, timeout=60,
                 what="some acknowledged records")
        f.kill()
        acked_at_kill = len(acked.read_text().splitlines())
        time.sleep(0.3)
        f2 = ferry_factory(
            doors=("http",),
            extra_args=["--kafka-addr", bootstrap],
            data_dir=f.data_dir,
        )
        assert f2.proc.poll() is None
        out, _ = child.communicate(timeout=200)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.startswith("left=0 errors=0"), out
    assert acked_at_kill < TOTAL, "the crash happened while producing"

    lines = acked.read_text().splitlines()
    acks = {}
    for line in lines:
        part, offset, value = line.split()
        acks[value] = (int(part), int(offset))
    assert len(acks) == TOTAL, "every record was eventually acknowledged"

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-check", "enable.auto.commit": False})
    stored = {}
    for p in range(3):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10)
        c.assign([TopicPartition(topic_name, p, 0)])
        n = 0
        deadline = time.monotonic() + 60
        while n < hi and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            n += 1
            v = m.value().decode()
            assert v not in stored, f"{v} stored twice: {stored[v]} and {(p, m.offset())}"
            stored[v] = (p, m.offset())
        assert n == hi
    for value, where in acks.items():
        assert stored.get(value) == where, f"{value} acknowledged at {where}, stored at {stored.get(value)}"
    assert len(stored) == TOTAL
    committed = c.committed([TopicPartition(topic_name, 1)], timeout=10)
    c.close()
    # The commit from before the crash is still there (as seen by its own group).
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-g", "enable.auto.commit": False})
    assert c.committed([TopicPartition(topic_name, 1)], timeout=10)[0].offset == 0
    c.close()
    assert committed[0].offset < 0


def test_consumer_group_survives_a_broker_kill_without_a_rebalance(ferry_factory, topic_name):
    """The coordinator saves stable groups: after kill -9 and a restart on the same port the
    member heartbeats on in its generation, keeps its partitions (no revocation) and consumes
    what is produced after the restart."""
    f = ferry_factory(doors=("http", "kafka"))
    bootstrap = f.doors["kafka"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=2)])[topic_name].result(timeout=10)
    revoked = []
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "survivor", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 30000, "heartbeat.interval.ms": 500,
                  "reconnect.backoff.max.ms": 500})
    c.subscribe([topic_name], on_revoke=lambda consumer, partitions: revoked.append(partitions))
    try:
        wait_for(lambda: (c.poll(0.1), len(c.assignment()) == 2)[1], timeout=60, what="assignment")
        time.sleep(0.5)  # the coordinator saves a changed group within a tick (100 ms)
        f.kill()
        time.sleep(0.3)
        f2 = ferry_factory(doors=("http",), extra_args=["--kafka-addr", bootstrap], data_dir=f.data_dir)
        assert f2.proc.poll() is None
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": bootstrap})
        p.produce(topic_name, value=b"after-restart", partition=1)
        assert p.flush(30) == 0
        got = wait_for(lambda: (lambda m: m if m is not None and not m.error() else None)(c.poll(0.2)),
                       timeout=60, what="the record produced after the restart")
        assert got.value() == b"after-restart"
        deadline = time.monotonic() + 3  # several heartbeats against the restarted coordinator
        while time.monotonic() < deadline:
            c.poll(0.1)
        assert revoked == []
        assert len(c.assignment()) == 2
        desc = admin.describe_consumer_groups(["survivor"])["survivor"].result(timeout=10)
        assert len(desc.members) == 1
    finally:
        c.close()
