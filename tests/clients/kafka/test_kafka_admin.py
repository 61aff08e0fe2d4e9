"""confluent-kafka AdminClient against the Kafka door: topics, partitions, configs, records."""

from confluent_kafka import Consumer, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AclOperation,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)


def admin(kafka):
    return AdminClient({"bootstrap.servers": kafka.bootstrap})


def test_create_describe_alter_delete_topic(kafka, topic_name):
    a = admin(kafka)
    fs = a.create_topics(
        [NewTopic(topic_name, num_partitions=3, replication_factor=1, config={"retention.ms": "60000"})],
        operation_timeout=10,
    )
    fs[topic_name].result(timeout=10)

    md = a.list_topics(timeout=10)
    assert topic_name in md.topics
    assert len(md.topics[topic_name].partitions) == 3
    assert md.brokers[0].host == kafka.bootstrap.split(":")[0]
    assert md.brokers[0].port == int(kafka.bootstrap.split(":")[1])

    # Creating it again fails with TOPIC_ALREADY_EXISTS.
    fs = a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])
    try:
        fs[topic_name].result(timeout=10)
        raise AssertionError("duplicate create succeeded")
    except KafkaException as e:
        assert e.args[0].name() == "TOPIC_ALREADY_EXISTS"

    res = ConfigResource(ResourceType.TOPIC, topic_name)
    configs = a.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.ms"].value == "60000"
    assert configs["cleanup.policy"].value == "delete"

    # Incremental alter: set cleanup.policy and retention.bytes.
    res = ConfigResource(
        ResourceType.TOPIC,
        topic_name,
        incremental_configs=[
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    a.incremental_alter_configs([res])[res].result(timeout=10)
    res = ConfigResource(ResourceType.TOPIC, topic_name)
    configs = a.describe_configs([res])[res].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["retention.bytes"].value == "1048576"
    assert configs["retention.ms"].value == "60000"

    # Non-incremental AlterConfigs replaces the whole set (unnamed keys go back to defaults).
    res = ConfigResource(ResourceType.TOPIC, topic_name, set_config={"retention.ms": "120000"})
    a.alter_configs([res])[res].result(timeout=10)
    configs = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic_name)])
    configs = list(configs.values())[0].result(timeout=10)
    assert configs["retention.ms"].value == "120000"
    assert configs["cleanup.policy"].value == "delete"

    # Grow to 5 partitions.
    a.create_partitions([NewPartitions(topic_name, 5)])[topic_name].result(timeout=10)
    assert len(a.list_topics(topic_name, timeout=10).topics[topic_name].partitions) == 5

    a.delete_topics([topic_name], operation_timeout=10)[topic_name].result(timeout=10)
    md = a.list_topics(timeout=10)
    assert topic_name not in md.topics


def test_invalid_requests_get_kafka_errors(kafka, topic_name):
    a = admin(kafka)
    fs = a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=3)])
    try:
        fs[topic_name].result(timeout=10)
        raise AssertionError("replication factor 3 accepted")
    except KafkaException as e:
        assert e.args[0].name() == "INVALID_REPLICATION_FACTOR"
    for bad in ({"no.such.key": "1"}, {"direct.io": "maybe"}):
        fs = a.create_topics([NewTopic(topic_name, num_partitions=1, config=bad)])
        try:
            fs[topic_name].result(timeout=10)
            raise AssertionError(f"config {bad} accepted")
        except KafkaException as e:
            assert e.args[0].name() == "INVALID_CONFIG"
    fs = a.delete_topics(["does-not-exist"], operation_timeout=10)
    try:
        fs["does-not-exist"].result(timeout=10)
        raise AssertionError("deleting a missing topic succeeded")
    except KafkaException as e:
        assert e.args[0].name() == "UNKNOWN_TOPIC_OR_PART"


def test_delete_records_moves_log_start(kafka, topic_name):
    from confluent_kafka import Consumer, Producer

    a = admin(kafka)
    a.create_topics([NewTopic(topic_name, num_partitions=1)])[topic_name].result(timeout=10)
    p = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0})
    for i in range(10):
        p.produce(topic_name, value=f"r{i}".encode())
        p.flush(10)  # one batch per record
    result = a.delete_records([TopicPartition(topic_name, 0, 4)])
    deleted = list(result.values())[0].result(timeout=10)
    assert deleted.low_watermark == 4
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "dr", "enable.auto.commit": False})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    assert (lo, hi) == (4, 10)
    c.close()


def test_compacted_topic_keeps_latest_per_key(kafka, topic_name):
    import requests
    from confluent_kafka import Consumer, Producer

    a = admin(kafka)
    config = {"cleanup.policy": "compact", "segment.bytes": "2048"}
    a.create_topics([NewTopic(topic_name, num_partitions=1, config=config)])[topic_name].result(timeout=10)
    p = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0, "compression.type": "lz4"})
    for i in range(200):
        p.produce(topic_name, key=f"k{i % 10}".encode(), value=f"v{i}".encode(), partition=0)
        if i % 20 == 0:
            p.flush(10)
    p.produce(topic_name, key=b"k0", value=None, partition=0)  # tombstone for k0
    p.flush(10)
    r = requests.post(f"{kafka.http_url}/v1/streams/{topic_name}/compact")
    assert r.status_code == 200, r.text
    (part,) = r.json()["partitions"]
    assert part["records_after"] < part["records_before"]

    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "compact", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic_name, 0, 0)])
    latest, offsets, count = {}, [], 0
    lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    assert hi == 201
    while not offsets or offsets[-1] < hi - 1:
        m = c.poll(5)
        assert m is not None, "consumer stalled on the compacted log"
        assert not m.error(), m.error()
        offsets.append(m.offset())
        latest[m.key()] = (m.offset(), m.value())
        count += 1
    c.close()
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert count < 201
    # The latest value of every key is what compaction must keep.
    for k in range(1, 10):
        last_i = max(i for i in range(200) if i % 10 == k)
        assert latest[f"k{k}".encode()] == (last_i, f"v{last_i}".encode())
    assert latest[b"k0"] == (200, None)


def test_describe_cluster_topics_and_groups_with_authorized_operations(kafka, topic_name):
    a = admin(kafka)
    a.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])[topic_name].result(timeout=10)
    host, port = kafka.bootstrap.split(":")

    cluster = a.describe_cluster(include_authorized_operations=True).result(timeout=10)
    assert cluster.cluster_id == "ferry"
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(0, host, int(port))]
    assert cluster.controller.id == 0
    # No ACLs yet: every operation Kafka defines for the resource, as a broker without an
    # authorizer reports.
    assert {AclOperation.DESCRIBE, AclOperation.ALTER, AclOperation.IDEMPOTENT_WRITE} <= set(
        cluster.authorized_operations
    )
    assert a.describe_cluster().result(timeout=10).authorized_operations is None

    topic = a.describe_topics(TopicCollection([topic_name]), include_authorized_operations=True)[
        topic_name
    ].result(timeout=10)
    assert len(topic.partitions) == 2
    assert {AclOperation.READ, AclOperation.WRITE, AclOperation.DELETE} <= set(topic.authorized_operations)

    group = "g-" + topic_name
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic_name])
        c.poll(3)
        described = a.describe_consumer_groups([group], include_authorized_operations=True)[group].result(timeout=10)
        assert set(described.authorized_operations) == {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE}
    finally:
        c.close()


def test_describe_broker_configs(kafka, topic_name):
    a = admin(kafka)
    a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])[topic_name].result(timeout=10)
    res = ConfigResource(ResourceType.BROKER, "0")
    broker = a.describe_configs([res])[res].result(timeout=10)
    assert broker["broker.id"].value == "0"
    assert broker["auto.create.topics.enable"].value == "true"
    assert broker["default.replication.factor"].value == "1"
    assert broker["num.partitions"].value == "1"  # kafka_default_partitions' default
    assert all(entry.is_read_only for entry in broker.values())
    # The topic defaults, under their broker names, agree with a new topic's defaults.
    topic = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic_name)])
    topic = list(topic.values())[0].result(timeout=10)
    for broker_key, topic_key in [
        ("log.retention.ms", "retention.ms"),
        ("log.retention.bytes", "retention.bytes"),
        ("log.cleanup.policy", "cleanup.policy"),
        ("message.max.bytes", "max.message.bytes"),
        ("log.segment.bytes", "segment.bytes"),
    ]:
        assert broker[broker_key].value == topic[topic_key].value, broker_key
