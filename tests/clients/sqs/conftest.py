"""Fixtures for the SQS suites: a running Ferry with its AWS door, and boto3 clients for it.

Every test gets a fresh server (fresh data directory, free ports). Clients use region
us-east-1 and dummy keys: without configured credentials the AWS door is in open mode and
accepts any signature from loopback peers.
"""

import time
import uuid
import xml.etree.ElementTree as ET

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
import requests
from botocore.config import Config

REGION = "us-east-1"
ACCOUNT = "000000000000"
NS = {"sqs": "http://queue.amazonaws.com/doc/2012-11-05/"}


def make_client(ferry, access_key="dummy", secret_key="dummy", **config):
    return boto3.client(
        "sqs",
        endpoint_url=ferry.url("aws"),
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 0, "mode": "standard"}, **config),
    )


@pytest.fixture
def ferry(ferry_factory):
    return ferry_factory(doors=("http", "aws"))


@pytest.fixture
def sqs(ferry):
    return make_client(ferry)


@pytest.fixture
def queue(sqs):
    """A fresh standard queue's URL."""
    return sqs.create_queue(QueueName="q-" + uuid.uuid4().hex[:8])["QueueUrl"]


@pytest.fixture
def fifo_queue(sqs):
    return sqs.create_queue(
        QueueName="f-" + uuid.uuid4().hex[:8] + ".fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]


def start_secured(ferry_factory, tmp_path, account, credentials):
    """A server whose AWS door serves `account` and accepts SigV4 from `credentials`: dicts with
    access_key_id and secret_access_key, and optionally account_id and user."""
    keys = "".join(
        "\n[[aws.credentials]]\n" + "".join(f'{k} = "{v}"\n' for k, v in c.items()) for c in credentials
    )
    cfg = tmp_path / "ferry.toml"
    cfg.write_text(f'[aws]\nregion = "{REGION}"\naccount_id = "{account}"\n{keys}')
    return ferry_factory(doors=("http", "aws"), extra_args=["--config", str(cfg)])


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def receive_all(sqs, url, want, timeout_s=10, **kw):
    """Receives until `want` messages arrived or the deadline passed; returns them."""
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **kw)
        got.extend(r.get("Messages", []))
    return got


def signed_query(ferry, params, access_key="dummy", secret_key="dummy", method="POST"):
    """A query-protocol request (form-encoded, XML answer), SigV4-signed by botocore's signer."""
    url = ferry.url("aws") + "/"
    body = dict(params)
    body.setdefault("Version", "2012-11-05")
    if method == "POST":
        req = botocore.awsrequest.AWSRequest(
            method="POST",
            url=url,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
    else:
        req = botocore.awsrequest.AWSRequest(method="GET", url=url, params=body)
    creds = botocore.credentials.Credentials(access_key, secret_key)
    botocore.auth.SigV4Auth(creds, "sqs", REGION).add_auth(req)
    prepared = req.prepare()
    r = requests.request(prepared.method, prepared.url, headers=dict(prepared.headers), data=prepared.body, timeout=30)
    return r, ET.fromstring(r.content)


def xml_text(root, path):
    el = root.find(path, NS)
    return None if el is None else el.text
