"""SigV4 on SNS requests when credentials are configured; unsigned ConfirmSubscription."""

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from snslib import error_code

KEY, SECRET = "AKIAFERRYSNS0001", "sns/s3cr3t+x"
REGION = "eu-west-1"
ACCOUNT = "123456789012"


@pytest.fixture
def secured(ferry_factory, tmp_path):
    cfg = tmp_path / "ferry.toml"
    cfg.write_text(f"""
[aws]
region = "{REGION}"
account_id = "{ACCOUNT}"

[[aws.credentials]]
access_key_id = "{KEY}"
secret_access_key = "{SECRET}"
""")
    return ferry_factory(doors=("http", "aws"), extra_args=["--config", str(cfg)])


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
