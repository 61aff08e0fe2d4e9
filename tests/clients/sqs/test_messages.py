"""Sending, receiving, deleting, visibility, batches, checksums and limits (boto3, JSON)."""

import hashlib
import struct
import threading
import time

import botocore.exceptions
import pytest

from conftest import ACCOUNT, error_code, receive_all, status


def md5_of_attributes(attrs):
    """MD5OfMessageAttributes exactly as the SQS documentation describes it."""
    buf = b""
    for name in sorted(attrs):
        v = attrs[name]
        buf += struct.pack(">I", len(name.encode())) + name.encode()
        dt = v["DataType"]
        buf += struct.pack(">I", len(dt.encode())) + dt.encode()
        if "BinaryValue" in v:
            data = v["BinaryValue"]
            buf += b"\x02" + struct.pack(">I", len(data)) + data
        else:
            data = v["StringValue"].encode()
            buf += b"\x01" + struct.pack(">I", len(data)) + data
    return hashlib.md5(buf).hexdigest()


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


ATTRS = {
    "city": {"DataType": "String", "StringValue": "Zürich"},
    "count": {"DataType": "Number", "StringValue": "42"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
    "price": {"DataType": "Number.float", "StringValue": "1.5"},
    "trace.id": {"DataType": "String.custom", "StringValue": "abc"},
}


def test_send_receive_delete_with_checksums(sqs, queue):
    body = "héllo wörld ✓ 𝄞"
    r = sqs.send_message(QueueUrl=queue, MessageBody=body, MessageAttributes=ATTRS)
    assert r["MD5OfMessageBody"] == md5(body)
    assert r["MD5OfMessageAttributes"] == md5_of_attributes(ATTRS)
    assert len(r["MessageId"]) == 36
    m = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"], AttributeNames=["All"])["Messages"]
    assert len(m) == 1
    m = m[0]
    assert m["Body"] == body
    assert m["MD5OfBody"] == md5(body)
    assert m["MessageId"] == r["MessageId"]
    assert m["MessageAttributes"] == ATTRS
    assert m["MD5OfMessageAttributes"] == md5_of_attributes(ATTRS)
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    assert m["Attributes"]["SenderId"] == ACCOUNT
    assert abs(int(m["Attributes"]["SentTimestamp"]) / 1000 - time.time()) < 60
    assert int(m["Attributes"]["ApproximateFirstReceiveTimestamp"]) >= int(m["Attributes"]["SentTimestamp"])
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert a["ApproximateNumberOfMessages"] == "0"
    assert a["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_system_attribute_trace_header_checksum(sqs, queue):
    sys_attrs = {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793"}}
    r = sqs.send_message(QueueUrl=queue, MessageBody="t", MessageSystemAttributes=sys_attrs)
    assert r["MD5OfMessageSystemAttributes"] == md5_of_attributes(sys_attrs)
    m = sqs.receive_message(QueueUrl=queue, MessageSystemAttributeNames=["AWSTraceHeader"])["Messages"][0]
    assert m["Attributes"] == {"AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793"}


def test_message_attribute_name_selection(sqs, queue):
    attrs = {
        "a.one": {"DataType": "String", "StringValue": "1"},
        "a.two": {"DataType": "String", "StringValue": "2"},
        "b": {"DataType": "String", "StringValue": "3"},
    }
    sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes=attrs)
    m = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["a.*"], VisibilityTimeout=0)["Messages"][0]
    assert set(m["MessageAttributes"]) == {"a.one", "a.two"}
    assert m["MD5OfMessageAttributes"] == md5_of_attributes({k: attrs[k] for k in ("a.one", "a.two")})
    m = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["b"], VisibilityTimeout=0)["Messages"][0]
    assert set(m["MessageAttributes"]) == {"b"}
    m = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=[".*"], VisibilityTimeout=0)["Messages"][0]
    assert set(m["MessageAttributes"]) == set(attrs)
    m = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)["Messages"][0]
    assert "MessageAttributes" not in m and "MD5OfMessageAttributes" not in m
    m = sqs.receive_message(QueueUrl=queue, AttributeNames=["SentTimestamp", "ApproximateReceiveCount"])["Messages"][0]
    assert set(m["Attributes"]) == {"SentTimestamp", "ApproximateReceiveCount"}
    assert m["Attributes"]["ApproximateReceiveCount"] == "5"


def test_visibility_timeout_and_change(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="v")
    m = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=30)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    m2 = sqs.receive_message(QueueUrl=queue, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert m2["MessageId"] == m["MessageId"]
    assert m2["Attributes"]["ApproximateReceiveCount"] == "2"
    # The old handle no longer addresses an in-flight delivery.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=m2["ReceiptHandle"], VisibilityTimeout=43201)
    assert error_code(e) == "InvalidParameterValue"
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m2["ReceiptHandle"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=m2["ReceiptHandle"], VisibilityTimeout=10)
    assert error_code(e) == "AWS.SimpleQueueService.MessageNotInflight"
    assert status(e) == 400


def test_visibility_expiry_redelivers(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="again")
    first = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=1)["Messages"][0]
    again = receive_all(sqs, queue, 1, timeout_s=10)
    assert again and again[0]["MessageId"] == first["MessageId"]


def test_invalid_receipt_handle(sqs, queue):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle="garbage")
    assert error_code(e) == "ReceiptHandleIsInvalid"
    assert type(e.value).__name__ == "ReceiptHandleIsInvalid"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle="garbage", VisibilityTimeout=5)
    assert error_code(e) == "ReceiptHandleIsInvalid"


def test_delay_seconds(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=2)
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"]
    assert a["ApproximateNumberOfMessagesDelayed"] == "1"
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    got = receive_all(sqs, queue, 1, timeout_s=10)
    assert [m["Body"] for m in got] == ["later"]
    for bad in (-1, 901):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sqs.send_message(QueueUrl=queue, MessageBody="x", DelaySeconds=bad)
        assert error_code(e) == "InvalidParameterValue"


def test_long_poll_returns_when_a_message_arrives(sqs, queue):
    def later():
        time.sleep(1.0)
        sqs.send_message(QueueUrl=queue, MessageBody="wake")

    t = threading.Thread(target=later)
    started = time.monotonic()
    t.start()
    r = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=15)
    elapsed = time.monotonic() - started
    t.join()
    assert [m["Body"] for m in r["Messages"]] == ["wake"]
    assert 0.8 <= elapsed < 10


def test_long_poll_times_out_empty(sqs, queue):
    started = time.monotonic()
    r = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
    assert "Messages" not in r
    assert time.monotonic() - started >= 0.9


@pytest.mark.parametrize(
    "kw",
    [
        {"MaxNumberOfMessages": 0},
        {"MaxNumberOfMessages": 11},
        {"WaitTimeSeconds": 21},
        {"WaitTimeSeconds": -1},
        {"VisibilityTimeout": 43201},
        {"VisibilityTimeout": -1},
    ],
)
def test_receive_parameter_limits(sqs, queue, kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.receive_message(QueueUrl=queue, **kw)
    assert error_code(e) == "InvalidParameterValue"
    assert status(e) == 400


def test_receive_up_to_ten(sqs, queue):
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)])
    got = receive_all(sqs, queue, 10)
    assert sorted(m["Body"] for m in got) == sorted(f"m{i}" for i in range(10))


@pytest.mark.parametrize("body", ["bad\x00char", "bell\x07", "\ufffe", "\uffff"])
def test_invalid_message_contents(sqs, queue, body):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    assert error_code(e) == "InvalidMessageContents"
    assert status(e) == 400


def test_allowed_edge_characters(sqs, queue):
    body = "\t\n\r \ud7ff\ue000\ufffd\U00010000\U0010ffff"
    r = sqs.send_message(QueueUrl=queue, MessageBody=body)
    assert r["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"] == body


def test_message_size_limit(sqs):
    url = sqs.create_queue(QueueName="small", Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1024)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1025)
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(
            QueueUrl=url,
            MessageBody="x" * 1000,
            MessageAttributes={"a": {"DataType": "String", "StringValue": "y" * 30}},
        )
    assert error_code(e) == "InvalidParameterValue"


def test_message_attribute_validation(sqs, queue):
    too_many = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)}
    cases = [
        too_many,
        {"a": {"DataType": "Strange", "StringValue": "v"}},
        {"a": {"DataType": "Number", "StringValue": "not-a-number"}},
        {"a": {"DataType": "String", "StringValue": ""}},
        {"AWS.reserved": {"DataType": "String", "StringValue": "v"}},
        {".dot": {"DataType": "String", "StringValue": "v"}},
        {"a..b": {"DataType": "String", "StringValue": "v"}},
    ]
    for attrs in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes=attrs)
        assert error_code(e) == "InvalidParameterValue", attrs
    sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes={k: v for k, v in list(too_many.items())[:10]})


def test_send_batch_partial_failure(sqs, queue):
    r = sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "ok1", "MessageBody": "one", "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
            {"Id": "bad-body", "MessageBody": "nul\x00"},
            {"Id": "ok2", "MessageBody": "two", "DelaySeconds": 0},
            {"Id": "bad-delay", "MessageBody": "x", "DelaySeconds": 1000},
        ],
    )
    ok = {e["Id"]: e for e in r["Successful"]}
    failed = {e["Id"]: e for e in r["Failed"]}
    assert set(ok) == {"ok1", "ok2"}
    assert set(failed) == {"bad-body", "bad-delay"}
    assert ok["ok1"]["MD5OfMessageBody"] == md5("one")
    assert ok["ok1"]["MD5OfMessageAttributes"] == md5_of_attributes({"k": {"DataType": "String", "StringValue": "v"}})
    assert failed["bad-body"]["Code"] == "InvalidMessageContents"
    assert failed["bad-body"]["SenderFault"] is True
    assert failed["bad-delay"]["Code"] == "InvalidParameterValue"
    got = receive_all(sqs, queue, 2)
    assert sorted(m["Body"] for m in got) == ["one", "two"]


def test_batch_request_errors(sqs, queue):
    cases = [
        ([], "AWS.SimpleQueueService.EmptyBatchRequest"),
        ([{"Id": str(i), "MessageBody": "x"} for i in range(11)], "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"),
        ([{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}], "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
        ([{"Id": "bad id!", "MessageBody": "x"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
        ([{"Id": "x" * 81, "MessageBody": "x"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
        ([{"Id": str(i), "MessageBody": "x" * 30000} for i in range(10)], "AWS.SimpleQueueService.BatchRequestTooLong"),
    ]
    for entries, code in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)
        assert error_code(e) == code
        assert status(e) == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.delete_message_batch(QueueUrl=queue, Entries=[])
    assert error_code(e) == "AWS.SimpleQueueService.EmptyBatchRequest"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.change_message_visibility_batch(QueueUrl=queue, Entries=[{"Id": "a", "ReceiptHandle": "h", "VisibilityTimeout": 1}] * 2)
    assert error_code(e) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"


def test_delete_and_visibility_batches_with_partial_failures(sqs, queue):
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(4)])
    got = receive_all(sqs, queue, 4, VisibilityTimeout=60)
    assert len(got) == 4
    r = sqs.change_message_visibility_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "a", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "b", "ReceiptHandle": "garbage", "VisibilityTimeout": 0},
            {"Id": "c", "ReceiptHandle": got[1]["ReceiptHandle"], "VisibilityTimeout": 50000},
        ],
    )
    assert [e["Id"] for e in r["Successful"]] == ["a"]
    failed = {e["Id"]: e["Code"] for e in r["Failed"]}
    assert failed == {"b": "ReceiptHandleIsInvalid", "c": "InvalidParameterValue"}
    assert all(e["SenderFault"] for e in r["Failed"])
    r = sqs.delete_message_batch(
        QueueUrl=queue,
        Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got[1:])] + [{"Id": "bad", "ReceiptHandle": "garbage"}],
    )
    assert sorted(e["Id"] for e in r["Successful"]) == ["d0", "d1", "d2"]
    assert [(e["Id"], e["Code"]) for e in r["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]
    left = receive_all(sqs, queue, 1)
    assert [m["Body"] for m in left] == [got[0]["Body"]]


def test_sender_id_in_open_mode_is_the_account(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="s")
    m = sqs.receive_message(QueueUrl=queue, MessageSystemAttributeNames=["SenderId"])["Messages"][0]
    assert m["Attributes"]["SenderId"] == ACCOUNT


def test_receive_unknown_system_attribute(sqs, queue):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.receive_message(QueueUrl=queue, AttributeNames=["Bogus"])
    assert error_code(e) == "InvalidAttributeName"
