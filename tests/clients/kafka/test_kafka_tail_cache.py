"""The stream partitions' tail cache: recent batches are fetched from memory, older ones from
the segment files, and both give the same records (confluent-kafka, checked through /metrics)."""

import re

import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafkalib import consume_all

RECORDS = 3000
VALUE_BYTES = 1000


def cache_metrics(f):
    """(bytes held, limit, hits, read-ahead hits, misses) from /metrics."""
    text = requests.get(f.http_url + "/metrics").text

    def value(pattern):
        m = re.search(pattern + r" (\d+(?:\.\d+)?(?:e\+?\d+)?)\n", text)
        assert m, f"{pattern} missing from /metrics"
        return int(float(m.group(1)))

    return (
        value(r"ferry_stream_cache_bytes"),
        value(r"ferry_stream_cache_limit_bytes"),
        value(r'ferry_stream_cache_reads_total\{result="hit"\}'),
        value(r'ferry_stream_cache_reads_total\{result="read_ahead"\}'),
        value(r'ferry_stream_cache_reads_total\{result="miss"\}'),
    )


def produce_and_read_back(f, topic):
    """Produces RECORDS numbered records to one partition in many small batches, then reads
    them all from the beginning with a fresh consumer; asserts every record, in order."""
    admin = AdminClient({"bootstrap.servers": f.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(timeout=10)
    p = Producer({"bootstrap.servers": f.bootstrap, "acks": "all", "linger.ms": 0, "batch.num.messages": 50})
    for i in range(RECORDS):
        p.produce(topic, value=f"{i:08d}".encode() + b"x" * (VALUE_BYTES - 8), partition=0)
        if i % 200 == 0:
            p.flush(30)
    assert p.flush(30) == 0
    c = Consumer(
        {
            "bootstrap.servers": f.bootstrap,
            "group.id": "cache-" + topic,
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 1024,
            "message.max.bytes": 64 * 1024,
            "max.partition.fetch.bytes": 64 * 1024,
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    msgs = consume_all(c, RECORDS)
    c.close()
    assert [m.offset() for m in msgs] == list(range(RECORDS))
    assert [int(m.value()[:8]) for m in msgs] == list(range(RECORDS))
    assert all(len(m.value()) == VALUE_BYTES for m in msgs)


@pytest.mark.parametrize("cache", ["default", "512KiB", "0"])
def test_reads_come_from_the_tail_cache_and_from_the_files_alike(ferry_factory, topic_name, cache):
    """Default budget: the whole topic is cached, every fetch is a hit. A 512 KiB budget holds
    only the newest ~0.5 of 3 MB: the consumer starts on the files, where all but its first
    fetch find their batches read ahead, and finishes in the cache. Budget 0: nothing is held,
    reads go to the files and the read-ahead."""
    extra = [] if cache == "default" else ["--stream-cache", cache]
    f = ferry_factory(doors=("http", "kafka"), extra_args=extra)
    f.bootstrap = f.doors["kafka"]
    before = cache_metrics(f)
    produce_and_read_back(f, topic_name)
    held, limit, hits, read_ahead, misses = cache_metrics(f)
    hits, read_ahead, misses = hits - before[2], read_ahead - before[3], misses - before[4]
    print(f"cache {cache}: hits {hits}, read-ahead {read_ahead}, misses {misses}")
    if cache == "default":
        assert limit == 256 * 1024 * 1024
        assert held >= RECORDS * VALUE_BYTES
        assert hits > 0 and read_ahead == 0 and misses == 0, (hits, read_ahead, misses)
    elif cache == "512KiB":
        assert limit == 512 * 1024
        assert 0 < held <= limit
        assert hits > 0 and misses > 0, (hits, read_ahead, misses)
        assert read_ahead > 0, (hits, read_ahead, misses)
    else:
        assert (held, limit, hits) == (0, 0, 0)
        assert misses > 0 and read_ahead > 0, (read_ahead, misses)

