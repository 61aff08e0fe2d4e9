"""Helpers shared by the SNS suites (boto3 clients, queues subscribed to topics, draining)."""

import json
import time
import uuid

import boto3
from botocore.config import Config

REGION = "us-east-1"
ACCOUNT = "000000000000"


def make_client(ferry, service):
    return boto3.client(
        service,
        endpoint_url=ferry.url("aws"),
        region_name=REGION,
        aws_access_key_id="dummy",
        aws_secret_access_key="dummy",
        config=Config(retries={"max_attempts": 0, "mode": "standard"}),
    )


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def queue_arn(name):
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def make_queue(sqs, name=None, fifo=False):
    """Creates a queue; returns (url, arn)."""
    name = name or unique("q")
    attrs = {}
    if fifo:
        name += ".fifo"
        attrs = {"FifoQueue": "true"}
    url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    return url, queue_arn(name)


def subscribe_queue(sns, sqs, topic_arn, filter_policy=None, scope=None, raw=False, fifo=False):
    """A fresh queue subscribed to the topic; returns (queue url, subscription arn)."""
    url, arn = make_queue(sqs, fifo=fifo)
    attrs = {}
    if filter_policy is not None:
        attrs["FilterPolicy"] = json.dumps(filter_policy)
    if scope:
        attrs["FilterPolicyScope"] = scope
    if raw:
        attrs["RawMessageDelivery"] = "true"
    sub = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attrs)
    return url, sub["SubscriptionArn"]


def drain(sqs, url, expect=None, timeout_s=10, quiet_s=0.5):
    """Receives and deletes until `expect` messages arrived (or, without `expect`, until the queue
    stays empty for `quiet_s`), bounded by `timeout_s`. Returns the messages."""
    got = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    while time.monotonic() < deadline:
        if expect is not None and len(got) >= expect:
            break
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                MessageAttributeNames=["All"], AttributeNames=["All"])
        msgs = r.get("Messages", [])
        if msgs:
            got.extend(msgs)
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
            last = time.monotonic()
        elif expect is None and time.monotonic() - last >= quiet_s:
            break
        else:
            time.sleep(0.05)
    return got


def envelope_messages(msgs):
    """The `Message` field of each enveloped notification."""
    return [json.loads(m["Body"])["Message"] for m in msgs]


def wait_until(pred, timeout_s=15, step=0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]
