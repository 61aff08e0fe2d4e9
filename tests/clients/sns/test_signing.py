"""Message signing: every envelope (SQS-delivered Notification, HTTP SubscriptionConfirmation,
Notification and UnsubscribeConfirmation) verifies against the certificate at its SigningCertURL,
exactly as a subscriber verifies messages from AWS (boto3 + `cryptography`)."""

import base64
import json

import botocore.exceptions
import pytest
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from snslib import drain, error_code, make_client, subscribe_queue, unique, wait_until
from test_http import Endpoint, confirm_via_subscribe_url

# The string to sign, as AWS documents it: these keys, in this order, each as "Key\nValue\n";
# a Notification without a Subject leaves it out.
NOTIFICATION_FIELDS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
CONFIRMATION_FIELDS = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]


def string_to_sign(env):
    fields = NOTIFICATION_FIELDS if env["Type"] == "Notification" else CONFIRMATION_FIELDS
    return "".join(f"{k}\n{env[k]}\n" for k in fields if k in env)


def certificate(env):
    r = requests.get(env["SigningCertURL"], timeout=10)
    assert r.status_code == 200, r.text
    return x509.load_pem_x509_certificate(r.content)


def verifies(env, cert=None):
    cert = cert or certificate(env)
    digest = {"1": hashes.SHA1(), "2": hashes.SHA256()}[env["SignatureVersion"]]
    try:
        cert.public_key().verify(base64.b64decode(env["Signature"]), string_to_sign(env).encode(),
                                 padding.PKCS1v15(), digest)
        return True
    except InvalidSignature:
        return False


def check_signed(env, ferry, version):
    """`env` is signed with `version`, verifies, and fails to verify once tampered with."""
    assert env["SignatureVersion"] == version
    assert env["Signature"]
    url = env["SigningCertURL"]
    assert url.startswith(ferry.url("aws") + "/SimpleNotificationService-") and url.endswith(".pem")
    cert = certificate(env)
    assert verifies(env, cert), env
    for field in ("Message", "MessageId", "Timestamp", "TopicArn", "Type"):
        assert not verifies(dict(env, **{field: env[field] + "x"}), cert), f"tampered {field} verified"
    for field in ("Subject", "Token", "SubscribeURL"):
        if field in env:
            assert not verifies(dict(env, **{field: env[field] + "x"}), cert), f"tampered {field} verified"
    # A signature made with the other digest does not pass for this version.
    other = {"1": "2", "2": "1"}[version]
    assert not verifies(dict(env, SignatureVersion=other), cert)


def topic(sns, version):
    attrs = {} if version == "1" else {"SignatureVersion": version}
    return sns.create_topic(Name=unique("t"), Attributes=attrs)["TopicArn"]


@pytest.mark.parametrize("version", ["1", "2"])
def test_sqs_notifications_are_signed(ferry, sns, sqs, version):
    arn = topic(sns, version)
    url, _ = subscribe_queue(sns, sqs, arn)
    sns.publish(TopicArn=arn, Message="with subject\nand two lines", Subject="greeting",
                MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    sns.publish(TopicArn=arn, Message='{"no": "subject"}')
    envs = sorted((json.loads(m["Body"]) for m in drain(sqs, url, expect=2)), key=lambda e: "Subject" in e)
    assert [("Subject" in e) for e in envs] == [False, True]
    for env in envs:
        check_signed(env, ferry, version)


def test_notification_signature_is_shared_by_a_fan_out_and_excludes_unsubscribe_url(ferry, sns, sqs):
    arn = topic(sns, "2")
    urls = [subscribe_queue(sns, sqs, arn)[0] for _ in range(3)]
    sns.publish(TopicArn=arn, Message="fan")
    envs = [json.loads(drain(sqs, u, expect=1)[0]["Body"]) for u in urls]
    assert len({e["UnsubscribeURL"] for e in envs}) == 3
    for env in envs:
        assert verifies(env)


@pytest.mark.parametrize("version", ["1", "2"])
def test_http_confirmations_and_notifications_are_signed(ferry, sns, version):
    endpoint = Endpoint()
    try:
        arn = topic(sns, version)
        sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url)
        conf = confirm_via_subscribe_url(endpoint)
        check_signed(conf, ferry, version)
        sns.publish(TopicArn=arn, Message="pushed", Subject="s")
        sns.publish(TopicArn=arn, Message="pushed without subject")
        assert wait_until(lambda: len(endpoint.of_type("Notification")) == 2)
        for headers, n in endpoint.of_type("Notification"):
            assert headers["x-amz-sns-message-id"] == n["MessageId"]
            check_signed(n, ferry, version)
        sub_arn = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"][0]["SubscriptionArn"]
        sns.unsubscribe(SubscriptionArn=sub_arn)
        assert wait_until(lambda: endpoint.of_type("UnsubscribeConfirmation"))
        headers, unsub = endpoint.of_type("UnsubscribeConfirmation")[0]
        assert headers["x-amz-sns-subscription-arn"] == sub_arn
        assert unsub["TopicArn"] == arn and sub_arn in unsub["Message"]
        assert unsub["Token"] == conf["Token"]
        check_signed(unsub, ferry, version)
    finally:
        endpoint.close()


def test_signature_version_attribute(sns):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    sns.set_topic_attributes(TopicArn=arn, AttributeName="SignatureVersion", AttributeValue="2")
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["SignatureVersion"] == "2"
    for bad in ("0", "3", "SHA256", ""):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sns.set_topic_attributes(TopicArn=arn, AttributeName="SignatureVersion", AttributeValue=bad)
        assert error_code(e) == "InvalidParameter"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sns.create_topic(Name=unique("t"), Attributes={"SignatureVersion": bad})
        assert error_code(e) == "InvalidParameter"
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["SignatureVersion"] == "2"


def test_certificate_is_public_and_only_at_its_own_path(ferry, sns, sqs):
    arn = topic(sns, "1")
    url, _ = subscribe_queue(sns, sqs, arn)
    sns.publish(TopicArn=arn, Message="m")
    env = json.loads(drain(sqs, url, expect=1)[0]["Body"])
    r = requests.get(env["SigningCertURL"], timeout=10)  # no SigV4, as from AWS
    assert r.status_code == 200 and r.text.startswith("-----BEGIN CERTIFICATE-----")
    other = ferry.url("aws") + "/SimpleNotificationService-00000000000000000000000000000000.pem"
    assert requests.get(other, timeout=10).status_code == 404


def test_key_and_certificate_survive_a_restart(ferry_factory, tmp_path):
    data = tmp_path / "signing-data"
    ferry = ferry_factory(doors=("http", "aws"), data_dir=data)
    sns, sqs = make_client(ferry, "sns"), make_client(ferry, "sqs")
    arn = topic(sns, "2")
    url, _ = subscribe_queue(sns, sqs, arn)
    sns.publish(TopicArn=arn, Message="before the restart")
    before = json.loads(drain(sqs, url, expect=1)[0]["Body"])
    cert_path = before["SigningCertURL"].split("/")[-1]
    ferry.kill()
    ferry = ferry_factory(doors=("http", "aws"), data_dir=data)
    sns, sqs = make_client(ferry, "sns"), make_client(ferry, "sqs")
    sns.publish(TopicArn=arn, Message="after the restart")
    after = json.loads(drain(sqs, url, expect=1)[0]["Body"])
    assert after["SigningCertURL"] == ferry.url("aws") + "/" + cert_path
    # The message signed before the restart verifies with the certificate served after it.
    cert = certificate(after)
    assert verifies(before, cert) and verifies(after, cert)
