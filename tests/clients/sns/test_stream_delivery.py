"""Stream subscriptions (a Ferry extension, `Protocol=stream`): boto3 subscribes a topic to a
stream and publishes; a confluent-kafka consumer on the Kafka door reads the records. Streams are
made with the native HTTP API, and the native subscription API and CLI are exercised too."""

import json
import os
import subprocess
import time

import botocore.exceptions
import pytest
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from snslib import drain, error_code, make_client, make_queue, unique
from test_ferry_cli import FERRY_BIN


@pytest.fixture
def ferry(ferry_factory):
    return ferry_factory(doors=("http", "aws", "kafka"))


def create_stream(ferry, partitions=1):
    name = unique("s")
    r = requests.post(f"{ferry.http_url}/v1/streams", json={"name": name, "partitions": partitions}, timeout=10)
    assert r.status_code == 201, r.text
    return name


def read_stream(ferry, name, partitions, expect, timeout_s=20):
    """Every record of the stream, read by confluent-kafka from the beginning of each partition."""
    c = Consumer({"bootstrap.servers": ferry.doors["kafka"], "group.id": unique("g"),
                  "enable.auto.commit": False})
    c.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert not m.error(), m.error()
            out.append(m)
        # Nothing more than expected.
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            m = c.poll(0.1)
            if m is not None and not m.error():
                out.append(m)
    finally:
        c.close()
    assert len(out) == expect, f"got {len(out)} of {expect} records"
    return out


def headers(msg):
    return dict(msg.headers() or [])


def test_stream_subscription_enveloped_and_raw(ferry):
    sns = make_client(ferry, "sns")
    stream = create_stream(ferry, partitions=3)
    raw_stream = create_stream(ferry)
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    sub = sns.subscribe(TopicArn=arn, Protocol="stream", Endpoint=stream,
                        ReturnSubscriptionArn=True)["SubscriptionArn"]
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert attrs["Protocol"] == "stream"
    assert attrs["Endpoint"] == stream
    assert attrs["PendingConfirmation"] == "false"
    sns.subscribe(TopicArn=arn, Protocol="stream", Endpoint=raw_stream,
                  Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"color": ["red"]})})

    ids = {}
    for color in ("red", "blue"):
        r = sns.publish(TopicArn=arn, Message=f"hello {color}", Subject="greeting",
                        MessageAttributes={"color": {"DataType": "String", "StringValue": color},
                                           "n": {"DataType": "Number", "StringValue": "5"},
                                           "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}})
        ids[color] = r["MessageId"]

    # Publish answered after the records were durable: they are there to read at once.
    records = read_stream(ferry, stream, 3, expect=2)
    by_id = {headers(m)["x-amz-sns-message-id"].decode(): m for m in records}
    assert set(by_id) == set(ids.values())
    for color, mid in ids.items():
        m = by_id[mid]
        env = json.loads(m.value())
        assert env["Type"] == "Notification"
        assert env["MessageId"] == mid
        assert env["TopicArn"] == arn
        assert env["Message"] == f"hello {color}"
        assert env["MessageAttributes"]["color"] == {"Type": "String", "Value": color}
        h = headers(m)
        assert h["x-amz-sns-topic-arn"] == arn.encode()
        assert h["color"] == color.encode()
        assert h["n"] == b"5"
        assert h["b"] == b"\x00\x01"
        assert m.key() is None
        # Keyless: the partition is crc32c(message id) % partitions (stable across retries).
        assert m.partition() in range(3)

    raw = read_stream(ferry, raw_stream, 1, expect=1)
    assert raw[0].value() == b"hello red"
    assert headers(raw[0])["x-amz-sns-message-id"] == ids["red"].encode()
    assert headers(raw[0])["color"] == b"red"

    # Counted per subscription (native API).
    topic = requests.get(f"{ferry.http_url}/v1/topics/{arn.split(':')[-1]}", timeout=10).json()
    assert sorted((s["delivered"], s["filtered_out"]) for s in topic["subscriptions"]) == [(1, 1), (2, 0)]


def test_subscribe_to_a_missing_stream_is_refused(ferry):
    sns = make_client(ferry, "sns")
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.subscribe(TopicArn=arn, Protocol="stream", Endpoint="no-such-stream")
    assert error_code(e) == "InvalidParameter"


def test_fifo_topic_keeps_group_order_in_one_partition(ferry):
    sns = make_client(ferry, "sns")
    stream = create_stream(ferry, partitions=4)
    arn = sns.create_topic(Name=unique("t") + ".fifo",
                           Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"})["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol="stream", Endpoint=stream, Attributes={"RawMessageDelivery": "true"})
    groups = ["g1", "g2", "g3"]
    for i in range(15):
        sns.publish(TopicArn=arn, Message=f"m{i}", MessageGroupId=groups[i % 3])
    records = read_stream(ferry, stream, 4, expect=15)
    for g in groups:
        mine = [m for m in records if m.key() == g.encode()]
        assert {m.partition() for m in mine} == {_crc32c(g.encode()) % 4}
        mine.sort(key=lambda m: m.offset())
        assert [m.value().decode() for m in mine] == [f"m{i}" for i in range(15) if groups[i % 3] == g]


def _crc32c(data):
    """CRC-32C (Castagnoli), bitwise: the stream partitioner's hash."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_deleted_stream_goes_to_the_dead_letter_queue(ferry):
    sns = make_client(ferry, "sns")
    sqs = make_client(ferry, "sqs")
    stream = create_stream(ferry)
    dlq_url, dlq_arn = make_queue(sqs)
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol="stream", Endpoint=stream,
                  Attributes={"RawMessageDelivery": "true",
                              "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})})
    assert requests.delete(f"{ferry.http_url}/v1/streams/{stream}", timeout=10).status_code in (200, 204)
    sns.publish(TopicArn=arn, Message="nowhere to go")
    assert [m["Body"] for m in drain(sqs, dlq_url, expect=1)] == ["nowhere to go"]
    topic = requests.get(f"{ferry.http_url}/v1/topics/{arn.split(':')[-1]}", timeout=10).json()
    s = topic["subscriptions"][0]
    assert (s["delivered"], s["failed"], s["dead_lettered"]) == (0, 1, 1)


def test_native_api_and_cli_subscribe_a_stream(ferry):
    stream = create_stream(ferry)
    topic = unique("t")
    api = ferry.http_url
    assert requests.post(f"{api}/v1/topics", json={"name": topic}, timeout=10).status_code == 201
    r = requests.post(f"{api}/v1/topics/{topic}/subscriptions", json={"stream": stream}, timeout=10)
    assert r.status_code == 201, r.text
    sub = r.json()
    assert (sub["protocol"], sub["stream"], sub["endpoint"], sub["confirmed"]) == ("stream", stream, stream, True)
    r = requests.post(f"{api}/v1/topics/{topic}/subscriptions", json={"stream": "missing-stream"}, timeout=10)
    assert r.status_code == 400, r.text

    cli_stream = create_stream(ferry)
    out = subprocess.run([FERRY_BIN, "topic", "subscribe", topic, "--stream", cli_stream, "--raw",
                          "--server", api, "--json"],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ, NO_COLOR="1"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["protocol"] == "stream"

    assert requests.post(f"{api}/v1/topics/{topic}/publish", json={"message": "via http"}, timeout=10).status_code == 200
    assert json.loads(read_stream(ferry, stream, 1, expect=1)[0].value())["Message"] == "via http"
    assert read_stream(ferry, cli_stream, 1, expect=1)[0].value() == b"via http"
