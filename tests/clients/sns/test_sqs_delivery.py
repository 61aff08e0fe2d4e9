"""Publishing to SQS queue subscriptions: envelope, raw delivery, attributes, MessageStructure,
PublishBatch (boto3 SNS publishing, boto3 SQS receiving)."""

import json

import botocore.exceptions
import pytest

from snslib import drain, error_code, subscribe_queue, unique


def test_enveloped_delivery(sns, sqs):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    url, sub = subscribe_queue(sns, sqs, arn)
    r = sns.publish(TopicArn=arn, Message="hello", Subject="greeting",
                    MessageAttributes={"color": {"DataType": "String", "StringValue": "red"},
                                       "n": {"DataType": "Number", "StringValue": "5"},
                                       "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}})
    msgs = drain(sqs, url, expect=1)
    assert len(msgs) == 1
    env = json.loads(msgs[0]["Body"])
    assert env["Type"] == "Notification"
    assert env["MessageId"] == r["MessageId"]
    assert env["TopicArn"] == arn
    assert env["Subject"] == "greeting"
    assert env["Message"] == "hello"
    assert env["Timestamp"].endswith("Z")
    assert env["SignatureVersion"] == "1"
    assert "Action=Unsubscribe" in env["UnsubscribeURL"]
    assert env["MessageAttributes"]["color"] == {"Type": "String", "Value": "red"}
    assert env["MessageAttributes"]["n"] == {"Type": "Number", "Value": "5"}
    assert env["MessageAttributes"]["b"] == {"Type": "Binary", "Value": "AAE="}
    assert "MessageAttributes" not in msgs[0], "enveloped delivery carries attributes in the body"


def test_raw_delivery(sns, sqs):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    url, _ = subscribe_queue(sns, sqs, arn, raw=True)
    sns.publish(TopicArn=arn, Message="raw body",
                MessageAttributes={"color": {"DataType": "String", "StringValue": "red"},
                                   "n": {"DataType": "Number", "StringValue": "5"}})
    msgs = drain(sqs, url, expect=1)
    assert msgs[0]["Body"] == "raw body"
    assert msgs[0]["MessageAttributes"]["color"] == {"DataType": "String", "StringValue": "red"}
    assert msgs[0]["MessageAttributes"]["n"] == {"DataType": "Number", "StringValue": "5"}


def test_fan_out_to_many_queues(sns, sqs):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    urls = [subscribe_queue(sns, sqs, arn)[0] for _ in range(8)]
    for i in range(5):
        sns.publish(TopicArn=arn, Message=f"m{i}")
    for url in urls:
        got = drain(sqs, url, expect=5)
        assert sorted(json.loads(m["Body"])["Message"] for m in got) == [f"m{i}" for i in range(5)]


def test_message_structure_json(sns, sqs):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    url, _ = subscribe_queue(sns, sqs, arn, raw=True)
    sns.publish(TopicArn=arn, MessageStructure="json",
                Message=json.dumps({"default": "for everyone", "sqs": "for queues", "http": "for web"}))
    assert [m["Body"] for m in drain(sqs, url, expect=1)] == ["for queues"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish(TopicArn=arn, MessageStructure="json", Message=json.dumps({"sqs": "no default"}))
    assert error_code(e) == "InvalidParameter"


def test_publish_validation(sns):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish(TopicArn=arn, Message="x" * (256 * 1024 + 1))
    assert error_code(e) == "InvalidParameter"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", MessageAttributes={"n": {"DataType": "Number", "StringValue": "abc"}})
    assert error_code(e) == "ParameterValueInvalid"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", MessageGroupId="g")
    assert error_code(e) == "InvalidParameter"


def test_publish_batch_with_partial_failures(sns, sqs):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    url, _ = subscribe_queue(sns, sqs, arn, raw=True)
    r = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
        {"Id": "ok1", "Message": "one"},
        {"Id": "bad", "Message": "two", "MessageAttributes": {"n": {"DataType": "Number", "StringValue": "NaN?"}}},
        {"Id": "ok2", "Message": "three", "Subject": "s"},
        {"Id": "grp", "Message": "four", "MessageGroupId": "g"},
    ])
    assert sorted(s["Id"] for s in r["Successful"]) == ["ok1", "ok2"]
    assert all(s["MessageId"] for s in r["Successful"])
    failed = {f["Id"]: f for f in r["Failed"]}
    assert set(failed) == {"bad", "grp"}
    assert failed["bad"]["SenderFault"] is True
    assert failed["bad"]["Code"] == "ParameterValueInvalid"
    assert sorted(m["Body"] for m in drain(sqs, url, expect=2)) == ["one", "three"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[{"Id": "a", "Message": "x"}] * 2)
    assert error_code(e) == "BatchEntryIdsNotDistinct"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[{"Id": f"i{i}", "Message": "x"} for i in range(11)])
    assert error_code(e) == "TooManyEntriesInBatchRequest"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[])
    assert error_code(e) in ("EmptyBatchRequest", "InvalidParameter")


def test_missing_queue_goes_to_subscription_dead_letter_queue(sns, sqs):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    dlq_url, _ = subscribe_queue(sns, sqs, sns.create_topic(Name=unique("other"))["TopicArn"])
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint="arn:aws:sqs:us-east-1:000000000000:does-not-exist",
                  Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})})
    sns.publish(TopicArn=arn, Message="lost?")
    got = drain(sqs, dlq_url, expect=1)
    assert [json.loads(m["Body"])["Message"] for m in got] == ["lost?"]
