"""FIFO topics to FIFO queues: group order, deduplication, content-based deduplication (boto3)."""

import json

import botocore.exceptions
import pytest

from snslib import drain, error_code, subscribe_queue, unique


def test_fifo_topic_to_fifo_queues(sns, sqs):
    arn = sns.create_topic(Name=unique("t") + ".fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    q1, _ = subscribe_queue(sns, sqs, arn, fifo=True, raw=True)
    q2, _ = subscribe_queue(sns, sqs, arn, fifo=True)
    q3, _ = subscribe_queue(sns, sqs, arn, {"keep": ["yes"]}, fifo=True, raw=True)
    seqs = []
    for i in range(30):
        r = sns.publish(TopicArn=arn, Message=f"{i}", MessageGroupId=f"g{i % 3}", MessageDeduplicationId=f"d{i}",
                        MessageAttributes={"keep": {"DataType": "String", "StringValue": "yes" if i % 2 else "no"}})
        seqs.append(int(r["SequenceNumber"]))
    assert seqs == sorted(seqs) and len(set(seqs)) == 30
    # A duplicate (same deduplication id) is accepted but not delivered again.
    dup = sns.publish(TopicArn=arn, Message="0", MessageGroupId="g0", MessageDeduplicationId="d0")
    assert dup["MessageId"]

    def bodies(url, raw, n):
        got = drain(sqs, url, expect=n)
        return [m["Body"] if raw else json.loads(m["Body"])["Message"] for m in got]

    for url, raw, expected in [(q1, True, range(30)), (q2, False, range(30)), (q3, True, range(1, 30, 2))]:
        got = bodies(url, raw, len(expected))
        assert sorted(got, key=int) == [str(i) for i in expected]
        for g in range(3):
            in_group = [int(b) for b in got if int(b) % 3 == g]
            assert in_group == sorted(in_group), f"group g{g} out of order: {in_group}"
    assert drain(sqs, q2, quiet_s=0.2) == [], "the duplicate was not delivered"


def test_fifo_requires_group_and_dedup(sns, sqs):
    arn = sns.create_topic(Name=unique("t") + ".fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", MessageDeduplicationId="d")
    assert error_code(e) == "InvalidParameter"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", MessageGroupId="g")
    assert error_code(e) == "InvalidParameter"
    # A FIFO queue may not subscribe to a standard topic.
    std = sns.create_topic(Name=unique("std"))["TopicArn"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        subscribe_queue(sns, sqs, std, fifo=True)
    assert error_code(e) == "InvalidParameter"


def test_content_based_deduplication(sns, sqs):
    arn = sns.create_topic(Name=unique("t") + ".fifo",
                           Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"})["TopicArn"]
    url, _ = subscribe_queue(sns, sqs, arn, fifo=True, raw=True)
    a = sns.publish(TopicArn=arn, Message="same", MessageGroupId="g")
    b = sns.publish(TopicArn=arn, Message="same", MessageGroupId="g")
    sns.publish(TopicArn=arn, Message="other", MessageGroupId="g")
    assert a["MessageId"] == b["MessageId"]
    assert [m["Body"] for m in drain(sqs, url, expect=2)] == ["same", "other"]
    assert drain(sqs, url, quiet_s=0.3) == []
