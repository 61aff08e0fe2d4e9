"""The native HTTP stream API (/v1/streams), and interop with Kafka clients on the same data."""

import json
import threading
import time

import requests
from confluent_kafka import Consumer, Producer, TopicPartition

from kafkalib import consume_all


def test_http_create_produce_fetch_and_kafka_interop(kafka, topic_name):
    base = kafka.http_url + "/v1/streams"
    r = requests.post(base, json={"name": topic_name, "partitions": 2, "config": {"retention.ms": "3600000"}})
    assert r.status_code == 201, r.text
    assert len(r.json()["partitions"]) == 2
    assert requests.post(base, json={"name": topic_name}).json()["error"]["code"] == "StreamAlreadyExists"

    records = [{"key": "k", "value": f"v{i}", "headers": {"h": "x"}, "partition": 1} for i in range(5)]
    r = requests.post(f"{base}/{topic_name}/records", json={"records": records})
    assert r.status_code == 200, r.text
    assert [o["offset"] for o in r.json()["offsets"]] == [0, 1, 2, 3, 4]

    # Fetch from an offset, from the end (long poll), by time.
    r = requests.get(f"{base}/{topic_name}/records", params={"partition": 1, "offset": 2})
    body = r.json()
    assert [x["value"] for x in body["records"]] == ["v2", "v3", "v4"]
    assert body["next_offset"] == 5 and body["high_watermark"] == 5
    assert body["records"][0]["headers"] == {"h": "x"}
    r = requests.get(f"{base}/{topic_name}/records", params={"partition": 1, "offset": 9})
    assert r.status_code == 416 and r.json()["error"]["code"] == "OffsetOutOfRange"

    # A Kafka consumer reads what HTTP produced...
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "http-interop", "enable.auto.commit": False})
    c.assign([TopicPartition(topic_name, 1, 0)])
    got = consume_all(c, 5)
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(5)]
    assert got[0].key() == b"k" and got[0].headers() == [("h", b"x")]
    c.commit(offsets=[TopicPartition(topic_name, 1, 3)], asynchronous=False)
    c.close()

    # ...and HTTP reads what Kafka produced (gzip-compressed batch).
    p = Producer({"bootstrap.servers": kafka.bootstrap, "compression.type": "gzip"})
    p.produce(topic_name, value=b"from-kafka", partition=0, timestamp=1_700_000_000_000)
    p.flush(10)
    r = requests.get(f"{base}/{topic_name}/records", params={"partition": 0, "since_ms": 1_699_999_999_000})
    rec = r.json()["records"][0]
    assert rec["value"] == "from-kafka" and rec["timestamp_ms"] == 1_700_000_000_000

    # Group lag.
    g = requests.get(kafka.http_url + "/v1/stream-groups/http-interop").json()
    assert {"stream": topic_name, "partition": 1, "committed_offset": 3, "high_watermark": 5, "lag": 2} in g["offsets"]
    assert "http-interop" in {x["group"] for x in requests.get(kafka.http_url + "/v1/stream-groups").json()["groups"]}

    # Metrics: partition offsets and group lag.
    m = requests.get(kafka.http_url + "/metrics").text
    assert f'ferry_stream_partition_high_watermark{{stream="{topic_name}",partition="1"}} 5' in m
    assert f'ferry_stream_group_lag{{group="http-interop",stream="{topic_name}",partition="1"}} 2' in m

    # Alter, grow, describe, delete.
    r = requests.patch(f"{base}/{topic_name}", json={"partitions": 4, "config": {"cleanup.policy": "compact"}})
    assert r.status_code == 200, r.text
    d = requests.get(f"{base}/{topic_name}").json()
    assert len(d["partitions"]) == 4 and d["config"]["cleanup.policy"] == "compact"
    assert topic_name in {s["name"] for s in requests.get(base).json()["streams"]}
    assert requests.delete(f"{base}/{topic_name}").status_code == 204
    assert requests.get(f"{base}/{topic_name}").status_code == 404


def test_http_long_poll_and_sse_tail(kafka, topic_name):
    base = kafka.http_url + "/v1/streams"
    requests.post(base, json={"name": topic_name}).raise_for_status()
    events = []

    def tail():
        with requests.get(f"{base}/{topic_name}/tail", params={"from": "end"}, stream=True, timeout=30) as r:
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if len(events) == 3:
                        return

    t = threading.Thread(target=tail, daemon=True)
    t.start()
    time.sleep(0.5)
    started = time.monotonic()
    poll = {}

    def long_poll():
        poll["r"] = requests.get(
            f"{base}/{topic_name}/records", params={"from": "end", "wait_ms": 10000}, timeout=30
        ).json()

    lp = threading.Thread(target=long_poll)
    lp.start()
    time.sleep(0.3)
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(3):
        p.produce(topic_name, value=f"live{i}".encode(), partition=0)
    p.flush(10)
    lp.join(15)
    assert [x["value"] for x in poll["r"]["records"]][:1] == ["live0"]
    assert time.monotonic() - started < 10
    t.join(15)
    assert [e["value"] for e in events] == ["live0", "live1", "live2"]
    assert [e["offset"] for e in events] == [0, 1, 2]
