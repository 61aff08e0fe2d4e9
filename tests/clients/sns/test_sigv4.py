"""SigV4 on SNS requests when credentials are configured; unsigned ConfirmSubscription."""

import json

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from snslib import error_code

KEY, SECRET = "AKIAFERRYSNS0001", "sns/s3cr3t+x"
REGION = "eu-west-1"
ACCOUNT = "123456789012"


def start_secured(ferry_factory, tmp_path, more_credentials=""):
    """A server whose AWS door has this file's key (of ACCOUNT, the owner) and `more_credentials`."""
    cfg = tmp_path / "ferry.toml"
    cfg.write_text(f"""
[aws]
region = "{REGION}"
account_id = "{ACCOUNT}"

[[aws.credentials]]
access_key_id = "{KEY}"
secret_access_key = "{SECRET}"
{more_credentials}""")
    return ferry_factory(doors=("http", "aws"), extra_args=["--config", str(cfg)])


@pytest.fixture
def secured(ferry_factory, tmp_path):
    return start_secured(ferry_factory, tmp_path)


def client(ferry, key, secret):
    return boto3.client("sns", endpoint_url=ferry.url("aws"), region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 0}))


def test_signed_requests_and_configured_identity(secured):
    sns = client(secured, KEY, SECRET)
    arn = sns.create_topic(Name="signed")["TopicArn"]
    assert arn == f"arn:aws:sns:{REGION}:{ACCOUNT}:signed"
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Owner"] == ACCOUNT
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(secured, KEY, "wrong-secret").list_topics()
    assert error_code(e) == "SignatureDoesNotMatch"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(secured, "AKIAUNKNOWN", SECRET).list_topics()
    assert error_code(e) == "InvalidClientTokenId"


OTHER_ACCOUNT = "210987654321"
OTHER_KEY, OTHER_SECRET = "AKIAFERRYSNSOTHER1", "other/s3cr3t"


@pytest.fixture
def two_accounts(ferry_factory, tmp_path):
    return start_secured(ferry_factory, tmp_path, f"""
[[aws.credentials]]
access_key_id = "{OTHER_KEY}"
secret_access_key = "{OTHER_SECRET}"
account_id = "{OTHER_ACCOUNT}"
""")


def forbidden(call, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kw)
    assert error_code(e) == "AuthorizationError", e.value.response
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_topic_policies_are_enforced_for_other_accounts(two_accounts):
    owner = client(two_accounts, KEY, SECRET)
    other = client(two_accounts, OTHER_KEY, OTHER_SECRET)
    arn = owner.create_topic(Name="shared")["TopicArn"]
    # The default policy grants the owner only.
    forbidden(other.publish, TopicArn=arn, Message="no")
    forbidden(other.get_topic_attributes, TopicArn=arn)
    owner.add_permission(TopicArn=arn, Label="pub", AWSAccountId=[OTHER_ACCOUNT], ActionName=["Publish"])
    assert other.publish(TopicArn=arn, Message="granted")["MessageId"]
    r = other.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[{"Id": "1", "Message": "m"}])
    assert [s["Id"] for s in r["Successful"]] == ["1"]
    forbidden(other.subscribe, TopicArn=arn, Protocol="sqs", Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:q")
    # Account-wide and owner-only actions stay the owner's.
    forbidden(other.list_topics)
    forbidden(other.create_topic, Name="theirs")
    forbidden(other.tag_resource, ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}])
    owner.remove_permission(TopicArn=arn, Label="pub")
    forbidden(other.publish, TopicArn=arn, Message="revoked")
    # A Deny statement binds the owner too.
    owner.set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sns:Publish", "Resource": arn}]}))
    forbidden(owner.publish, TopicArn=arn, Message="denied")
    assert owner.get_topic_attributes(TopicArn=arn)["Attributes"]["TopicArn"] == arn
    # A policy Ferry cannot enforce is refused.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        owner.set_topic_attributes(TopicArn=arn, AttributeName="Policy",
                                   AttributeValue=json.dumps({"Statement": [{"Effect": "Allow", "Action": "sns:*"}]}))
    assert error_code(e) == "InvalidParameter"
