"""Queue lifecycle, attributes, tags and permissions through boto3 (AWS JSON 1.0 protocol)."""

import json
import time

import botocore.exceptions
import pytest
import requests

from conftest import ACCOUNT, REGION, error_code, make_client, status


def test_create_get_url_list_delete(ferry, sqs):
    host = ferry.doors["aws"]
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    assert url == f"http://{host}/{ACCOUNT}/orders"
    assert sqs.get_queue_url(QueueName="orders")["QueueUrl"] == url
    assert sqs.list_queues()["QueueUrls"] == [url]
    sqs.delete_queue(QueueUrl=url)
    assert "QueueUrls" not in sqs.list_queues()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.get_queue_url(QueueName="orders")
    assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"
    assert status(e) == 400
    assert type(e.value).__name__ == "QueueDoesNotExist"


def test_json_error_shape_and_query_error_header(ferry):
    r = requests.post(
        ferry.url("aws") + "/",
        headers={"X-Amz-Target": "AmazonSQS.GetQueueUrl", "Content-Type": "application/x-amz-json-1.0"},
        data=json.dumps({"QueueName": "missing"}),
        timeout=10,
    )
    assert r.status_code == 400
    assert r.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    assert r.json()["__type"] == "com.amazonaws.sqs#QueueDoesNotExist"
    assert r.json()["message"]


def test_list_queues_prefix_and_pagination(sqs):
    names = [f"p-{i:02}" for i in range(7)] + ["other"]
    for n in names:
        sqs.create_queue(QueueName=n)
    assert len(sqs.list_queues(QueueNamePrefix="p-")["QueueUrls"]) == 7
    seen, token = [], None
    while True:
        kw = {"QueueNamePrefix": "p-", "MaxResults": 3}
        if token:
            kw["NextToken"] = token
        r = sqs.list_queues(**kw)
        seen += r["QueueUrls"]
        token = r.get("NextToken")
        if not token:
            break
    assert [u.rsplit("/", 1)[1] for u in seen] == names[:7]
    pages = list(sqs.get_paginator("list_queues").paginate(PaginationConfig={"PageSize": 2}))
    assert sum(len(p.get("QueueUrls", [])) for p in pages) == 8
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.list_queues(MaxResults=1001)
    assert error_code(e) == "InvalidParameterValue"


def test_queue_addressed_by_path(ferry, sqs, queue):
    name = queue.rsplit("/", 1)[1]
    r = requests.post(
        f"{ferry.url('aws')}/{ACCOUNT}/{name}",
        headers={"X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": "application/x-amz-json-1.0"},
        data=json.dumps({"MessageBody": "by path"}),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"] == "by path"


def test_create_is_idempotent_and_conflicts_on_different_attributes(sqs):
    a = sqs.create_queue(QueueName="idem", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    assert sqs.create_queue(QueueName="idem", Attributes={"VisibilityTimeout": "60"})["QueueUrl"] == a
    assert sqs.create_queue(QueueName="idem")["QueueUrl"] == a
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.create_queue(QueueName="idem", Attributes={"VisibilityTimeout": "61"})
    assert error_code(e) == "QueueAlreadyExists"
    assert type(e.value).__name__ == "QueueNameExists"
    assert status(e) == 400


@pytest.mark.parametrize("name", ["", "has space", "x" * 81, "bad!char", "standard.fifo"])
def test_invalid_queue_names(sqs, name):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.create_queue(QueueName=name)
    assert error_code(e) in ("InvalidParameterValue",)


def test_fifo_name_rules(sqs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.create_queue(QueueName="nofifosuffix", Attributes={"FifoQueue": "true"})
    assert error_code(e) == "InvalidParameterValue"
    assert sqs.create_queue(QueueName="x" * 75 + ".fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    sqs.create_queue(QueueName="y" * 80)


def test_purge_and_purge_in_progress(sqs, queue):
    for i in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=f"m{i}")
    sqs.purge_queue(QueueUrl=queue)
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.purge_queue(QueueUrl=queue)
    assert error_code(e) == "AWS.SimpleQueueService.PurgeQueueInProgress"
    assert status(e) == 403


def test_missing_queue_everywhere(sqs, ferry):
    missing = f"{ferry.url('aws')}/{ACCOUNT}/nope"
    for call in [
        lambda: sqs.send_message(QueueUrl=missing, MessageBody="x"),
        lambda: sqs.receive_message(QueueUrl=missing),
        lambda: sqs.get_queue_attributes(QueueUrl=missing),
        lambda: sqs.delete_queue(QueueUrl=missing),
        lambda: sqs.purge_queue(QueueUrl=missing),
        lambda: sqs.list_queue_tags(QueueUrl=missing),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"


def test_missing_parameter(sqs, queue):
    with pytest.raises(botocore.exceptions.ParamValidationError):
        sqs.send_message(QueueUrl=queue)
    r = requests.post(
        queue.rsplit("/", 2)[0] + "/",
        headers={"X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": "application/x-amz-json-1.0"},
        data=json.dumps({"QueueUrl": queue}),
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["__type"] == "com.amazonaws.sqs#MissingParameter"
    assert r.headers["x-amzn-query-error"] == "MissingParameter;Sender"


ALL_STANDARD = {
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "VisibilityTimeout",
    "DelaySeconds",
    "MessageRetentionPeriod",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
}


def test_get_all_attributes_standard_defaults(sqs, queue):
    before = int(time.time()) - 5
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert set(a) == ALL_STANDARD
    assert a["VisibilityTimeout"] == "30"
    assert a["DelaySeconds"] == "0"
    assert a["MessageRetentionPeriod"] == "345600"
    assert a["MaximumMessageSize"] == "262144"
    assert a["ReceiveMessageWaitTimeSeconds"] == "0"
    assert a["QueueArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue.rsplit('/', 1)[1]}"
    assert before <= int(a["CreatedTimestamp"]) <= time.time() + 5
    assert a["SqsManagedSseEnabled"] == "true"


def test_set_and_get_every_settable_attribute(sqs, queue):
    dlq = sqs.create_queue(QueueName="attr-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    sqs.set_queue_attributes(
        QueueUrl=queue,
        Attributes={
            "VisibilityTimeout": "45",
            "DelaySeconds": "2",
            "MessageRetentionPeriod": "120",
            "MaximumMessageSize": "2048",
            "ReceiveMessageWaitTimeSeconds": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "4"}),
            "Policy": policy,
            "KmsMasterKeyId": "alias/aws/sqs",
            "KmsDataKeyReusePeriodSeconds": "600",
        },
    )
    sqs.set_queue_attributes(
        QueueUrl=dlq,
        Attributes={"RedriveAllowPolicy": json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [src_arn]})},
    )
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert a["VisibilityTimeout"] == "45"
    assert a["DelaySeconds"] == "2"
    assert a["MessageRetentionPeriod"] == "120"
    assert a["MaximumMessageSize"] == "2048"
    assert a["ReceiveMessageWaitTimeSeconds"] == "1"
    assert json.loads(a["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 4}
    assert json.loads(a["Policy"]) == json.loads(policy)
    assert a["KmsMasterKeyId"] == "alias/aws/sqs"
    assert a["KmsDataKeyReusePeriodSeconds"] == "600"
    assert a["SqsManagedSseEnabled"] == "false"
    d = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["RedriveAllowPolicy"])["Attributes"]
    assert json.loads(d["RedriveAllowPolicy"]) == {"redrivePermission": "byQueue", "sourceQueueArns": [src_arn]}
    # Only what was asked for.
    one = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["DelaySeconds"])["Attributes"]
    assert one == {"DelaySeconds": "2"}
    # Removing the redrive policy.
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"RedrivePolicy": ""})
    assert "RedrivePolicy" not in sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]


@pytest.mark.parametrize(
    "name,value",
    [
        ("VisibilityTimeout", "43201"),
        ("VisibilityTimeout", "-1"),
        ("DelaySeconds", "901"),
        ("MessageRetentionPeriod", "59"),
        ("MessageRetentionPeriod", "1209601"),
        ("MaximumMessageSize", "1023"),
        ("MaximumMessageSize", "1048577"),
        ("ReceiveMessageWaitTimeSeconds", "21"),
        ("KmsDataKeyReusePeriodSeconds", "59"),
        ("SqsManagedSseEnabled", "maybe"),
        ("Policy", "not json"),
    ],
)
def test_invalid_attribute_values(sqs, queue, name, value):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={name: value})
    assert error_code(e) == "InvalidAttributeValue"
    assert status(e) == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.create_queue(QueueName="bad-attr", Attributes={name: value})
    assert error_code(e) == "InvalidAttributeValue"


def test_invalid_redrive_policy_is_invalid_parameter_value(sqs, queue):
    for value in ["{", json.dumps({"maxReceiveCount": 3}), json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:nope", "maxReceiveCount": 3})]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sqs.set_queue_attributes(QueueUrl=queue, Attributes={"RedrivePolicy": value})
        assert error_code(e) == "InvalidParameterValue"


@pytest.mark.parametrize("name", ["Bogus", "QueueArn", "ApproximateNumberOfMessages", "ContentBasedDeduplication", "FifoQueue"])
def test_invalid_attribute_names(sqs, queue, name):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={name: "1"})
    assert error_code(e) == "InvalidAttributeName"
    assert status(e) == 400


def test_get_unknown_attribute_name(sqs, queue):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["Nope"])
    assert error_code(e) == "InvalidAttributeName"


def test_fifo_attributes(sqs):
    url = sqs.create_queue(
        QueueName="ht.fifo",
        Attributes={
            "FifoQueue": "true",
            "ContentBasedDeduplication": "true",
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
        },
    )["QueueUrl"]
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert a["FifoQueue"] == "true"
    assert a["ContentBasedDeduplication"] == "true"
    assert a["DeduplicationScope"] == "messageGroup"
    assert a["FifoThroughputLimit"] == "perMessageGroupId"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DeduplicationScope": "queue", "FifoThroughputLimit": "perQueue"})
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DeduplicationScope", "FifoThroughputLimit"])["Attributes"]
    assert a == {"DeduplicationScope": "queue", "FifoThroughputLimit": "perQueue"}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"DeduplicationScope": "everything"})
    assert error_code(e) == "InvalidAttributeValue"


def test_last_modified_changes_on_set(sqs, queue):
    a0 = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["LastModifiedTimestamp"])["Attributes"]
    time.sleep(1.1)
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"DelaySeconds": "1"})
    a1 = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["LastModifiedTimestamp"])["Attributes"]
    assert int(a1["LastModifiedTimestamp"]) > int(a0["LastModifiedTimestamp"])


def test_tags(sqs):
    url = sqs.create_queue(QueueName="tagged", tags={"team": "a", "env": "dev"})["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "a", "env": "dev"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "prod", "cost": "1"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "a", "env": "prod", "cost": "1"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["team", "cost"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "prod"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["env"])
    assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.tag_queue(QueueUrl=url, Tags={f"k{i}": "v" for i in range(51)})
    assert error_code(e) == "InvalidParameterValue"


def test_add_and_remove_permission(sqs, queue):
    sqs.add_permission(QueueUrl=queue, Label="p1", AWSAccountIds=["111122223333"], Actions=["SendMessage"])
    sqs.add_permission(QueueUrl=queue, Label="p2", AWSAccountIds=["111122223333", "444455556666"], Actions=["ReceiveMessage", "DeleteMessage"])
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["Policy"])["Attributes"]["Policy"])
    sids = {s["Sid"]: s for s in policy["Statement"]}
    assert set(sids) == {"p1", "p2"}
    assert sids["p1"]["Action"] == "SQS:SendMessage"
    assert sids["p1"]["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert sids["p2"]["Action"] == ["SQS:ReceiveMessage", "SQS:DeleteMessage"]
    assert sids["p1"]["Resource"].endswith(":" + queue.rsplit("/", 1)[1])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.add_permission(QueueUrl=queue, Label="p1", AWSAccountIds=["111122223333"], Actions=["SendMessage"])
    assert error_code(e) == "InvalidParameterValue"
    sqs.remove_permission(QueueUrl=queue, Label="p1")
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["p2"]
    sqs.remove_permission(QueueUrl=queue, Label="p2")
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["Policy"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.remove_permission(QueueUrl=queue, Label="p2")
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.add_permission(QueueUrl=queue, Label="p3", AWSAccountIds=["111122223333"], Actions=["Explode"])
    assert error_code(e) == "InvalidParameterValue"


def test_unknown_action(ferry):
    r = requests.post(
        ferry.url("aws") + "/",
        headers={"X-Amz-Target": "AmazonSQS.Explode", "Content-Type": "application/x-amz-json-1.0"},
        data="{}",
        timeout=10,
    )
    assert r.status_code == 400
    assert r.headers["x-amzn-query-error"].startswith("InvalidAction;")
    r = requests.post(
        ferry.url("aws") + "/",
        headers={"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0"},
        data="{not json",
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["__type"].endswith("#SerializationException")


def test_a_deleted_queue_name_is_free_at_once_by_default(sqs):
    url = sqs.create_queue(QueueName="reborn")["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    assert sqs.create_queue(QueueName="reborn")["QueueUrl"] == url


def test_queue_deleted_recently_with_a_reuse_delay(ferry_factory, tmp_path):
    """With `aws.queue_name_reuse_delay_seconds` set, as SQS (60 s), a deleted name is held back."""
    cfg = tmp_path / "ferry.toml"
    cfg.write_text("[aws]\nqueue_name_reuse_delay_seconds = 2\n")
    f = ferry_factory(doors=("http", "aws"), extra_args=["--config", str(cfg)])
    sqs = make_client(f)
    url = sqs.create_queue(QueueName="held")["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    deleted_at = time.monotonic()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.create_queue(QueueName="held")
    assert error_code(e) == "AWS.SimpleQueueService.QueueDeletedRecently"
    assert status(e) == 400
    assert "wait 2 seconds" in e.value.response["Error"]["Message"]
    sqs.create_queue(QueueName="other")  # other names are free
    time.sleep(max(0.0, 2.2 - (time.monotonic() - deleted_at)))
    assert sqs.create_queue(QueueName="held")["QueueUrl"] == url
