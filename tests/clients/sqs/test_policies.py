"""Queue policies enforced (AddPermission and the Policy attribute) when keys are configured.

ferry.toml gives the door its own account (the queues' owner) and keys of three principals:
the owner, the root of another account, and an IAM user of that other account. Every request
goes through boto3, signed with the principal's key.
"""

import json

import botocore.exceptions
import pytest

from conftest import REGION, error_code, make_client, start_secured, status

OWNER_ACCOUNT, OTHER_ACCOUNT = "123456789012", "210987654321"
OWNER = ("AKIAOWNER00000000001", "owner-secret")
OTHER = ("AKIAOTHER00000000002", "other-secret")
ALICE = ("AKIAALICE00000000003", "alice-secret")


@pytest.fixture
def door(ferry_factory, tmp_path):
    def key(pair, **more):
        return {"access_key_id": pair[0], "secret_access_key": pair[1], **more}

    return start_secured(
        ferry_factory,
        tmp_path,
        OWNER_ACCOUNT,
        [key(OWNER), key(OTHER, account_id=OTHER_ACCOUNT), key(ALICE, account_id=OTHER_ACCOUNT, user="alice")],
    )


@pytest.fixture
def owner(door):
    return make_client(door, *OWNER)


@pytest.fixture
def other(door):
    return make_client(door, *OTHER)


@pytest.fixture
def alice(door):
    return make_client(door, *ALICE)


def arn(name):
    return f"arn:aws:sqs:{REGION}:{OWNER_ACCOUNT}:{name}"


def denied(call, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kw)
    assert error_code(e) == "AccessDenied", e.value.response
    assert status(e) == 403
    return e


def set_policy(owner, url, *statements):
    owner.set_queue_attributes(
        QueueUrl=url, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)})}
    )


def test_another_account_gets_only_what_add_permission_grants(owner, other):
    url = owner.create_queue(QueueName="shared")["QueueUrl"]
    denied(other.send_message, QueueUrl=url, MessageBody="no")
    denied(other.get_queue_url, QueueName="shared", QueueOwnerAWSAccountId=OWNER_ACCOUNT)

    owner.add_permission(QueueUrl=url, Label="send", AWSAccountIds=[OTHER_ACCOUNT], Actions=["SendMessage", "GetQueueUrl"])
    assert other.get_queue_url(QueueName="shared", QueueOwnerAWSAccountId=OWNER_ACCOUNT)["QueueUrl"] == url
    other.send_message(QueueUrl=url, MessageBody="one")
    # SendMessage also grants its batch form.
    r = other.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "two"}])
    assert [e["Id"] for e in r["Successful"]] == ["a"]
    denied(other.receive_message, QueueUrl=url)
    denied(other.purge_queue, QueueUrl=url)
    denied(other.get_queue_attributes, QueueUrl=url, AttributeNames=["All"])

    got = owner.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["SenderId"])["Messages"]
    assert sorted(m["Body"] for m in got) == ["one", "two"]
    assert {m["Attributes"]["SenderId"] for m in got} == {OTHER[0]}

    owner.remove_permission(QueueUrl=url, Label="send")
    denied(other.send_message, QueueUrl=url, MessageBody="revoked")


def test_owner_only_actions_stay_the_owners_even_with_everything_granted(owner, other):
    url = owner.create_queue(QueueName="all")["QueueUrl"]
    owner.add_permission(QueueUrl=url, Label="all", AWSAccountIds=[OTHER_ACCOUNT], Actions=["*"])
    other.send_message(QueueUrl=url, MessageBody="x")
    m = other.receive_message(QueueUrl=url)["Messages"][0]
    other.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=5)
    other.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert other.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"] == arn("all")
    other.purge_queue(QueueUrl=url)
    denied(other.set_queue_attributes, QueueUrl=url, Attributes={"DelaySeconds": "1"})
    denied(other.delete_queue, QueueUrl=url)
    denied(other.add_permission, QueueUrl=url, Label="mine", AWSAccountIds=[OTHER_ACCOUNT], Actions=["*"])
    denied(other.remove_permission, QueueUrl=url, Label="all")
    denied(other.tag_queue, QueueUrl=url, Tags={"k": "v"})
    denied(other.list_queue_tags, QueueUrl=url)
    denied(other.create_queue, QueueName="theirs")
    denied(other.list_queues)
    assert owner.list_queues()["QueueUrls"] == [url]


def test_policy_attribute_with_wildcards_user_principals_and_deny(owner, other, alice):
    orders = owner.create_queue(QueueName="orders-eu")["QueueUrl"]
    set_policy(
        owner,
        orders,
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:user/alice"},
         "Action": ["sqs:Send*", "SQS:Receive*"], "Resource": f"arn:aws:sqs:*:{OWNER_ACCOUNT}:orders-*"},
        {"Effect": "Deny", "Principal": "*", "Action": "sqs:PurgeQueue", "Resource": "*"},
    )
    # The user ARN grants alice, not the other account's root.
    alice.send_message(QueueUrl=orders, MessageBody="from alice")
    assert alice.receive_message(QueueUrl=orders)["Messages"][0]["Body"] == "from alice"
    denied(other.send_message, QueueUrl=orders, MessageBody="no")
    # An explicit Deny binds the owner too; the owner's other actions are unaffected.
    denied(owner.purge_queue, QueueUrl=orders)
    owner.send_message(QueueUrl=orders, MessageBody="owner")
    # A resource pattern that does not match grants nothing.
    plain = owner.create_queue(QueueName="invoices")["QueueUrl"]
    set_policy(owner, plain, {"Effect": "Allow", "Principal": "*", "Action": "sqs:*",
                              "Resource": f"arn:aws:sqs:*:{OWNER_ACCOUNT}:orders-*"})
    denied(alice.send_message, QueueUrl=plain, MessageBody="no")


def test_conditions_on_source_address_and_time(owner, other):
    url = owner.create_queue(QueueName="cond")["QueueUrl"]

    def grant(condition):
        set_policy(owner, url, {"Effect": "Allow", "Principal": {"AWS": OTHER_ACCOUNT}, "Action": "sqs:SendMessage",
                                "Resource": arn("cond"), "Condition": condition})

    grant({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}})
    other.send_message(QueueUrl=url, MessageBody="loopback")
    grant({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
    denied(other.send_message, QueueUrl=url, MessageBody="no")
    grant({"DateGreaterThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}, "Bool": {"aws:SecureTransport": "false"}})
    other.send_message(QueueUrl=url, MessageBody="in time")
    grant({"DateLessThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}})
    denied(other.send_message, QueueUrl=url, MessageBody="too late")
    # A key these requests never carry: a positive test fails, IfExists holds.
    grant({"ArnEquals": {"aws:SourceArn": f"arn:aws:sns:{REGION}:{OWNER_ACCOUNT}:t"}})
    denied(other.send_message, QueueUrl=url, MessageBody="no")
    grant({"ArnEqualsIfExists": {"aws:SourceArn": f"arn:aws:sns:{REGION}:{OWNER_ACCOUNT}:t"}})
    other.send_message(QueueUrl=url, MessageBody="if exists")


def test_policies_ferry_cannot_enforce_are_refused(owner):
    url = owner.create_queue(QueueName="strict")["QueueUrl"]
    for bad in [
        {"Statement": [{"Effect": "Allow", "Action": "sqs:*"}]},
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:*",
                        "Condition": {"StringMaybe": {"aws:SourceIp": "x"}}}]},
        {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "someone"}, "Action": "sqs:*"}]},
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            owner.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(bad)})
        assert error_code(e) == "InvalidAttributeValue"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            owner.create_queue(QueueName="strict2", Attributes={"Policy": json.dumps(bad)})
        assert error_code(e) == "InvalidAttributeValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        owner.add_permission(QueueUrl=url, Label="x", AWSAccountIds=["alice"], Actions=["SendMessage"])
    assert error_code(e) == "InvalidParameterValue"
    assert "Policy" not in owner.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_unknown_queue_is_reported_as_such_to_other_accounts(owner, other):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        other.send_message(QueueUrl=f"{owner.meta.endpoint_url}/{OWNER_ACCOUNT}/missing", MessageBody="x")
    assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"


def test_message_move_tasks_need_the_source_and_destination_permissions(owner, other):
    dlq = owner.create_queue(QueueName="dlq")["QueueUrl"]
    back = owner.create_queue(QueueName="back")["QueueUrl"]
    owner.create_queue(QueueName="src", Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": arn("dlq"), "maxReceiveCount": 1})})
    owner.send_message(QueueUrl=dlq, MessageBody="stuck")
    source_perms = ["sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks", "sqs:ReceiveMessage",
                    "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    set_policy(owner, dlq, {"Effect": "Allow", "Principal": {"AWS": OTHER_ACCOUNT}, "Action": source_perms})
    # The destination grants nothing yet.
    denied(other.start_message_move_task, SourceArn=arn("dlq"), DestinationArn=arn("back"))
    set_policy(owner, back, {"Effect": "Allow", "Principal": {"AWS": OTHER_ACCOUNT}, "Action": "sqs:SendMessage"})
    other.start_message_move_task(SourceArn=arn("dlq"), DestinationArn=arn("back"))
    assert other.list_message_move_tasks(SourceArn=arn("dlq"))["Results"]
    got = owner.receive_message(QueueUrl=back, WaitTimeSeconds=5)["Messages"]
    assert got[0]["Body"] == "stuck"
