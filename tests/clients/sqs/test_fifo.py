"""FIFO queues: group ordering, deduplication, sequence numbers, receive attempts."""

import hashlib
import uuid

import botocore.exceptions
import pytest

from conftest import error_code, receive_all


def test_group_order_and_sequence_numbers(sqs, fifo_queue):
    seqs = []
    for i in range(6):
        r = sqs.send_message(QueueUrl=fifo_queue, MessageBody=f"a{i}", MessageGroupId="A", MessageDeduplicationId=f"a{i}")
        seqs.append(int(r["SequenceNumber"]))
        assert isinstance(r["SequenceNumber"], str)
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    bodies = []
    for _ in range(6):
        r = sqs.receive_message(QueueUrl=fifo_queue, MaxNumberOfMessages=1, AttributeNames=["All"])
        m = r["Messages"][0]
        assert m["Attributes"]["MessageGroupId"] == "A"
        assert m["Attributes"]["SequenceNumber"].lstrip("0") == str(seqs[len(bodies)])
        assert m["Attributes"]["MessageDeduplicationId"] == f"a{len(bodies)}"
        # While a group has a message in flight, the next one in the group waits.
        assert "Messages" not in sqs.receive_message(QueueUrl=fifo_queue)
        bodies.append(m["Body"])
        sqs.delete_message(QueueUrl=fifo_queue, ReceiptHandle=m["ReceiptHandle"])
    assert bodies == [f"a{i}" for i in range(6)]


def test_groups_are_independent(sqs, fifo_queue):
    for g in ("A", "B"):
        for i in range(3):
            sqs.send_message(QueueUrl=fifo_queue, MessageBody=f"{g}{i}", MessageGroupId=g, MessageDeduplicationId=f"{g}{i}")
    r = sqs.receive_message(QueueUrl=fifo_queue, MaxNumberOfMessages=10)
    bodies = [m["Body"] for m in r["Messages"]]
    for g in ("A", "B"):
        mine = [b for b in bodies if b.startswith(g)]
        assert mine == [f"{g}{i}" for i in range(len(mine))]


def test_dedup_by_id(sqs, fifo_queue):
    r1 = sqs.send_message(QueueUrl=fifo_queue, MessageBody="one", MessageGroupId="g", MessageDeduplicationId="d1")
    r2 = sqs.send_message(QueueUrl=fifo_queue, MessageBody="one again", MessageGroupId="g", MessageDeduplicationId="d1")
    assert r1["MessageId"] == r2["MessageId"]
    assert r1["SequenceNumber"] == r2["SequenceNumber"]
    got = receive_all(sqs, fifo_queue, 2, timeout_s=2)
    assert [m["Body"] for m in got] == ["one"]


def test_content_based_dedup(sqs):
    url = sqs.create_queue(QueueName="cbd.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    r1 = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    r2 = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    sqs.send_message(QueueUrl=url, MessageBody="different", MessageGroupId="g")
    assert r1["MessageId"] == r2["MessageId"]
    got = receive_all(sqs, url, 3, timeout_s=3, AttributeNames=["MessageDeduplicationId"])
    assert [m["Body"] for m in got][:1] == ["same"]
    m = sqs.receive_message(QueueUrl=url)
    assert len(got) + len(m.get("Messages", [])) <= 2
    assert got[0]["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"same").hexdigest()


def test_fifo_send_errors(sqs, fifo_queue):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=fifo_queue, MessageBody="x", MessageDeduplicationId="d")
    assert error_code(e) == "MissingParameter"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=fifo_queue, MessageBody="x", MessageGroupId="g")
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=fifo_queue, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d", DelaySeconds=5)
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=fifo_queue, MessageBody="x", MessageGroupId="g" * 129, MessageDeduplicationId="d")
    assert error_code(e) == "InvalidParameterValue"


def test_standard_queue_refuses_dedup_id(sqs, queue):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x", MessageDeduplicationId="d")
    assert error_code(e) == "InvalidParameterValue"


def test_batch_on_fifo_reports_sequence_numbers(sqs, fifo_queue):
    r = sqs.send_message_batch(
        QueueUrl=fifo_queue,
        Entries=[
            {"Id": "a", "MessageBody": "1", "MessageGroupId": "g", "MessageDeduplicationId": "1"},
            {"Id": "b", "MessageBody": "2", "MessageGroupId": "g", "MessageDeduplicationId": "2"},
            {"Id": "c", "MessageBody": "3", "MessageGroupId": "g"},
        ],
    )
    ok = {e["Id"]: e for e in r["Successful"]}
    assert set(ok) == {"a", "b"}
    assert int(ok["a"]["SequenceNumber"]) < int(ok["b"]["SequenceNumber"])
    assert [(f["Id"], f["SenderFault"]) for f in r["Failed"]] == [("c", True)]


def test_receive_request_attempt_id_returns_the_same_messages(sqs, fifo_queue):
    for i in range(3):
        sqs.send_message(QueueUrl=fifo_queue, MessageBody=f"m{i}", MessageGroupId=f"g{i}", MessageDeduplicationId=f"m{i}")
    attempt = uuid.uuid4().hex
    r1 = sqs.receive_message(QueueUrl=fifo_queue, MaxNumberOfMessages=2, ReceiveRequestAttemptId=attempt)
    r2 = sqs.receive_message(QueueUrl=fifo_queue, MaxNumberOfMessages=2, ReceiveRequestAttemptId=attempt)
    assert [m["MessageId"] for m in r1["Messages"]] == [m["MessageId"] for m in r2["Messages"]]
    r3 = sqs.receive_message(QueueUrl=fifo_queue, MaxNumberOfMessages=10, ReceiveRequestAttemptId=uuid.uuid4().hex)
    assert len(r3["Messages"]) == 1


def test_high_throughput_mode(sqs):
    url = sqs.create_queue(
        QueueName="ht2.fifo",
        Attributes={"FifoQueue": "true", "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId"},
    )["QueueUrl"]
    # With dedup scoped by group, the same dedup id in two groups is two messages.
    a = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g1", MessageDeduplicationId="same")
    b = sqs.send_message(QueueUrl=url, MessageBody="y", MessageGroupId="g2", MessageDeduplicationId="same")
    assert a["MessageId"] != b["MessageId"]
    got = receive_all(sqs, url, 2)
    assert sorted(m["Body"] for m in got) == ["x", "y"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.create_queue(QueueName="ht3.fifo", Attributes={"FifoQueue": "true", "FifoThroughputLimit": "perMessageGroupId"})
    assert error_code(e) == "InvalidAttributeValue"
