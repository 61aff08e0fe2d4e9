"""Dead-letter queues, ListDeadLetterSourceQueues and message move tasks."""

import json
import time

import botocore.exceptions
import pytest

from conftest import ACCOUNT, REGION, error_code, receive_all, status


def arn(name):
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def make_pair(sqs, src="src", dlq="dlq", max_receive=2):
    d = sqs.create_queue(QueueName=dlq)["QueueUrl"]
    s = sqs.create_queue(
        QueueName=src,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn(dlq), "maxReceiveCount": str(max_receive)})},
    )["QueueUrl"]
    return s, d


def wait_for(pred, timeout_s=15):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


def dead_letter_one(sqs, s, body="poison", max_receive=2):
    sqs.send_message(QueueUrl=s, MessageBody=body)
    for _ in range(max_receive):
        got = receive_all(sqs, s, 1, VisibilityTimeout=0)
        assert got and got[0]["Body"] == body
    # The next receive moves it instead of delivering it.
    assert "Messages" not in sqs.receive_message(QueueUrl=s)


def test_max_receive_count_moves_message_to_dlq(sqs):
    s, d = make_pair(sqs)
    dead_letter_one(sqs, s)
    got = receive_all(sqs, d, 1, AttributeNames=["All"])
    assert [m["Body"] for m in got] == ["poison"]
    assert got[0]["Attributes"]["DeadLetterQueueSourceArn"] == arn("src")
    assert sqs.list_dead_letter_source_queues(QueueUrl=d)["queueUrls"] == [s]


def test_list_dead_letter_source_queues_paginates(sqs):
    d = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    policy = json.dumps({"deadLetterTargetArn": arn("dlq"), "maxReceiveCount": 3})
    srcs = [sqs.create_queue(QueueName=f"s{i}", Attributes={"RedrivePolicy": policy})["QueueUrl"] for i in range(5)]
    r = sqs.list_dead_letter_source_queues(QueueUrl=d, MaxResults=2)
    assert r["queueUrls"] == srcs[:2] and r["NextToken"]
    pages = list(sqs.get_paginator("list_dead_letter_source_queues").paginate(QueueUrl=d, PaginationConfig={"PageSize": 2}))
    assert [u for p in pages for u in p["queueUrls"]] == srcs


def test_move_task_back_to_source(sqs):
    s, d = make_pair(sqs, max_receive=1)
    for i in range(3):
        dead_letter_one(sqs, s, body=f"p{i}", max_receive=1)
    wait_for(lambda: sqs.get_queue_attributes(QueueUrl=d, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"] == "3")
    handle = sqs.start_message_move_task(SourceArn=arn("dlq"))["TaskHandle"]
    assert handle

    def done():
        r = sqs.list_message_move_tasks(SourceArn=arn("dlq"), MaxResults=10)["Results"]
        return r if r and r[0]["Status"] == "COMPLETED" else None

    tasks = wait_for(done)
    assert tasks, sqs.list_message_move_tasks(SourceArn=arn("dlq"))
    assert tasks[0]["ApproximateNumberOfMessagesMoved"] == 3
    assert tasks[0]["SourceArn"] == arn("dlq")
    back = receive_all(sqs, s, 3, AttributeNames=["ApproximateReceiveCount"])
    assert sorted(m["Body"] for m in back) == ["p0", "p1", "p2"]
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in back)


def test_move_task_to_explicit_destination_with_rate(sqs):
    s, d = make_pair(sqs, max_receive=1)
    other = sqs.create_queue(QueueName="other")["QueueUrl"]
    dead_letter_one(sqs, s, max_receive=1)
    wait_for(lambda: sqs.get_queue_attributes(QueueUrl=d, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"] == "1")
    sqs.start_message_move_task(SourceArn=arn("dlq"), DestinationArn=arn("other"), MaxNumberOfMessagesPerSecond=5)
    got = receive_all(sqs, other, 1)
    assert [m["Body"] for m in got] == ["poison"]
    t = wait_for(lambda: [t for t in sqs.list_message_move_tasks(SourceArn=arn("dlq"))["Results"] if t["Status"] == "COMPLETED"])
    assert t[0]["DestinationArn"] == arn("other")
    assert t[0]["MaxNumberOfMessagesPerSecond"] == 5


def test_cancel_move_task(sqs):
    make_pair(sqs, max_receive=1)
    d = sqs.get_queue_url(QueueName="dlq")["QueueUrl"]
    other = sqs.create_queue(QueueName="other")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=d, Entries=[{"Id": str(j), "MessageBody": f"m{j}"} for j in range(10)])
    # One message stays in flight in the DLQ, so the rate-limited task cannot finish at once.
    held = sqs.receive_message(QueueUrl=d, VisibilityTimeout=60)["Messages"]
    assert len(held) == 1
    handle = sqs.start_message_move_task(SourceArn=arn("dlq"), DestinationArn=arn("other"), MaxNumberOfMessagesPerSecond=1)["TaskHandle"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.start_message_move_task(SourceArn=arn("dlq"))
    assert error_code(e) == "AWS.SimpleQueueService.UnsupportedOperation"
    running = sqs.list_message_move_tasks(SourceArn=arn("dlq"))["Results"][0]
    assert running["Status"] == "RUNNING" and running["TaskHandle"] == handle
    assert running["ApproximateNumberOfMessagesToMove"] == 10
    moved = sqs.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"]
    assert moved < 10
    final = wait_for(lambda: [t for t in sqs.list_message_move_tasks(SourceArn=arn("dlq"))["Results"] if t["Status"] == "CANCELLED"])
    assert final and "TaskHandle" not in final[0]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.cancel_message_move_task(TaskHandle=handle)
    assert error_code(e) == "ResourceNotFoundException"
    assert status(e) == 404
    assert other


def test_move_task_errors(sqs):
    sqs.create_queue(QueueName="plain")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.start_message_move_task(SourceArn=arn("plain"))
    assert error_code(e) == "AWS.SimpleQueueService.UnsupportedOperation"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.start_message_move_task(SourceArn=arn("nope"))
    assert error_code(e) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.list_message_move_tasks(SourceArn=arn("nope"))
    assert error_code(e) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.cancel_message_move_task(TaskHandle="no-such-task")
    assert error_code(e) == "ResourceNotFoundException"
    make_pair(sqs, src="s2", dlq="d2")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.start_message_move_task(SourceArn=arn("d2"), MaxNumberOfMessagesPerSecond=501)
    assert error_code(e) == "InvalidParameterValue"


def test_redrive_allow_policy_deny_all(sqs):
    sqs.create_queue(QueueName="closed", Attributes={"RedriveAllowPolicy": json.dumps({"redrivePermission": "denyAll"})})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.create_queue(
            QueueName="wants-closed",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn("closed"), "maxReceiveCount": 1})},
        )
    assert error_code(e) == "InvalidAttributeValue"
