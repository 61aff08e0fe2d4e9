"""Produce and consume round trips with confluent-kafka (librdkafka) and kafka-python."""

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from kafkalib import consume_all


def create(kafka, topic, partitions=1, config=None):
    a = AdminClient({"bootstrap.servers": kafka.bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=partitions, config=config or {})])[topic].result(timeout=10)


def produce(kafka, topic, records, **conf):
    """Produces (key, value, headers, partition) tuples; returns the delivered messages."""
    p = Producer({"bootstrap.servers": kafka.bootstrap, **conf})
    delivered, errors = [], []

    def cb(err, msg):
        (errors if err else delivered).append(err or msg)

    for key, value, headers, partition in records:
        kwargs = {"key": key, "value": value, "headers": headers, "on_delivery": cb}
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
    assert p.flush(30) == 0
    assert not errors, errors
    return delivered


def consumer(kafka, group, **conf):
    return Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **conf,
        }
    )


def test_idempotent_acks_all_round_trip_keeps_keys_headers_order(kafka, topic_name):
    create(kafka, topic_name, partitions=3)
    records = [
        (f"k{i % 5}".encode(), f"value-{i}".encode(), [("h", f"{i}".encode())], None)
        for i in range(300)
    ]
    delivered = produce(
        kafka, topic_name, records, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    assert len(delivered) == 300
    # Offsets per partition are dense and start at 0.
    by_partition = {}
    for m in delivered:
        by_partition.setdefault(m.partition(), []).append(m.offset())
    for offsets in by_partition.values():
        assert sorted(offsets) == list(range(len(offsets)))

    c = consumer(kafka, "g-roundtrip")
    c.subscribe([topic_name])
    got = consume_all(c, 300)
    c.close()
    assert sorted(m.value() for m in got) == sorted(r[1] for r in records)
    # Same key, same partition, producer order kept.
    per_key = {}
    for m in got:
        per_key.setdefault(m.key(), set()).add(m.partition())
        assert dict(m.headers())["h"] == m.value().split(b"-")[1]
    assert all(len(ps) == 1 for ps in per_key.values())
    for part in range(3):
        values = [int(m.value().split(b"-")[1]) for m in got if m.partition() == part]
        assert values == sorted(values)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_codecs(kafka, topic_name, codec):
    create(kafka, topic_name)
    values = [(b"x" * 50 + str(i).encode()) for i in range(200)]
    produce(
        kafka,
        topic_name,
        [(None, v, None, 0) for v in values],
        **{"compression.type": codec, "linger.ms": 20},
    )
    c = consumer(kafka, f"g-{codec}")
    c.assign([TopicPartition(topic_name, 0, 0)])
    got = consume_all(c, 200)
    c.close()
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(200))


def test_offsets_for_times_replay(kafka, topic_name):
    create(kafka, topic_name)
    p = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0})
    base = int(time.time() * 1000) - 100_000
    for i in range(30):
        p.produce(topic_name, value=f"v{i}".encode(), partition=0, timestamp=base + i * 1000)
    assert p.flush(10) == 0
    c = consumer(kafka, "g-times")
    found = c.offsets_for_times([TopicPartition(topic_name, 0, base + 10_500)], timeout=10)
    assert found[0].offset == 11
    # Past the end: -1 (no such offset).
    found = c.offsets_for_times([TopicPartition(topic_name, 0, base + 10_000_000)], timeout=10)
    assert found[0].offset == -1
    c.assign([TopicPartition(topic_name, 0, 11)])
    got = consume_all(c, 19)
    assert got[0].value() == b"v11"
    assert got[0].timestamp()[1] == base + 11_000
    lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    assert (lo, hi) == (0, 30)
    c.close()


def test_list_offsets_by_max_timestamp(kafka, topic_name):
    create(kafka, topic_name, partitions=2)
    a = AdminClient({"bootstrap.servers": kafka.bootstrap})
    p0, p1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
    # Partition 0: timestamps out of order, the largest twice (offsets 2 and 4), in batches of
    # several records so the lookup has to look inside a batch.
    p = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 50})
    for i, ts in enumerate([1_000, 3_000, 9_000, 2_000, 9_000, 4_000]):
        p.produce(topic_name, value=f"v{i}".encode(), partition=0, timestamp=ts)
    assert p.flush(10) == 0
    found = a.list_offsets({p0: OffsetSpec.max_timestamp(), p1: OffsetSpec.max_timestamp()})
    top = found[p0].result(timeout=10)
    assert (top.offset, top.timestamp) == (2, 9_000)
    empty = found[p1].result(timeout=10)
    assert empty.offset == -1, "an empty partition has no record with a largest timestamp"
    latest = a.list_offsets({p0: OffsetSpec.latest()})[p0].result(timeout=10)
    assert latest.offset == 6


def test_long_poll_fetch_delivers_new_records(kafka, topic_name):
    create(kafka, topic_name)
    c = consumer(kafka, "g-poll", **{"fetch.wait.max.ms": 5000})
    c.assign([TopicPartition(topic_name, 0, 0)])
    c.poll(0.5)
    start = time.monotonic()
    produce(kafka, topic_name, [(None, b"late", None, 0)])
    got = consume_all(c, 1, timeout=10)
    assert got[0].value() == b"late"
    assert time.monotonic() - start < 5, "the long poll did not wake on new data"
    c.close()


def test_auto_create_on_produce(kafka, topic_name):
    delivered = produce(kafka, topic_name, [(None, b"a", None, None)])
    assert delivered[0].offset() == 0
    md = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10)
    assert topic_name in md.topics


def test_auto_create_disabled(ferry_factory, topic_name):
    f = ferry_factory(doors=("http", "kafka"), extra_args=["--kafka-auto-create-topics", "false"])
    p = Producer(
        {"bootstrap.servers": f.doors["kafka"], "message.timeout.ms": 3000, "allow.auto.create.topics": True}
    )
    errors = []
    p.produce(topic_name, value=b"a", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None
    md = AdminClient({"bootstrap.servers": f.doors["kafka"]}).list_topics(timeout=10)
    assert topic_name not in md.topics


def test_message_too_large(kafka, topic_name):
    create(kafka, topic_name, config={"max.message.bytes": "2000"})
    p = Producer({"bootstrap.servers": kafka.bootstrap, "message.timeout.ms": 5000})
    errors = []
    p.produce(topic_name, value=b"y" * 5000, partition=0, on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors[0] is not None and errors[0].name() == "MSG_SIZE_TOO_LARGE"


def test_kafka_python_round_trip(kafka, topic_name):
    from kafka import KafkaConsumer, KafkaProducer

    create(kafka, topic_name, partitions=2)
    p = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    futures = [p.send(topic_name, key=b"k%d" % (i % 3), value=b"kp-%d" % i) for i in range(50)]
    metas = [f.get(timeout=10) for f in futures]
    assert all(m.offset >= 0 for m in metas)
    p.close()
    c = KafkaConsumer(
        topic_name,
        bootstrap_servers=kafka.bootstrap,
        group_id="kp-group",
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
    )
    got = []
    for m in c:
        got.append(m.value)
        if len(got) == 50:
            break
    c.commit()
    c.close()
    assert sorted(got) == sorted(b"kp-%d" % i for i in range(50))


def test_log_append_time(kafka, topic_name):
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

    create(kafka, topic_name, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0})
    p.produce(topic_name, value=b"stamped", partition=0, timestamp=1000)  # the broker overrides it
    assert p.flush(10) == 0
    c = consumer(kafka, "g-lat")
    c.assign([TopicPartition(topic_name, 0, 0)])
    (m,) = consume_all(c, 1)
    c.close()
    kind, ts = m.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= int(time.time() * 1000) + 1000


@pytest.mark.parametrize("acks", ["0", "1"])
def test_acks_zero_and_one(kafka, topic_name, acks):
    create(kafka, topic_name)
    delivered = produce(kafka, topic_name, [(None, f"a{i}".encode(), None, 0) for i in range(100)], acks=acks)
    assert len(delivered) == 100
    if acks == "1":
        assert sorted(m.offset() for m in delivered) == list(range(100))
    c = consumer(kafka, f"g-acks{acks}")
    c.assign([TopicPartition(topic_name, 0, 0)])
    got = consume_all(c, 100)
    c.close()
    assert [m.value() for m in got] == [f"a{i}".encode() for i in range(100)]
