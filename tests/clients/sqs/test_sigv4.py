"""SigV4 on the AWS door when credentials are configured in ferry.toml."""

import datetime
import hashlib
import hmac
import json
import urllib.parse

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import pytest
import requests

from conftest import REGION, error_code, make_client, signed_query, start_secured, status, xml_text

KEY, SECRET = "AKIAFERRYTEST0001", "s3cr3t/with+chars"


@pytest.fixture
def secured(ferry_factory, tmp_path):
    return start_secured(
        ferry_factory, tmp_path, "123456789012", [{"access_key_id": KEY, "secret_access_key": SECRET}]
    )


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign_json(url, target, body, key=KEY, secret=SECRET, when=None):
    """An independent SigV4 signer (header form) with a chosen signing time."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    host = urllib.parse.urlparse(url).netloc
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/x-amz-json-1.0", "host": host, "x-amz-date": amz_date, "x-amz-target": target}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["POST", "/", "", "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, hashlib.sha256(payload).hexdigest()]
    )
    scope = f"{date}/{REGION}/sqs/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(("AWS4" + secret).encode(), date)
    for part in (REGION, "sqs", "aws4_request"):
        k = _hmac(k, part)
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}"
    return requests.post(url + "/", headers=headers, data=payload, timeout=10)


def test_valid_signature_is_accepted_and_sender_id_is_the_key(secured):
    sqs = make_client(secured, KEY, SECRET)
    url = sqs.create_queue(QueueName="signed")["QueueUrl"]
    assert "/123456789012/signed" in url
    sqs.send_message(QueueUrl=url, MessageBody="x")
    m = sqs.receive_message(QueueUrl=url, AttributeNames=["SenderId"])["Messages"][0]
    assert m["Attributes"]["SenderId"] == KEY
    r = sign_json(secured.url("aws"), "AmazonSQS.ListQueues", {})
    assert r.status_code == 200, r.text


def test_unknown_key_is_invalid_client_token_id(secured):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        make_client(secured, "AKIAUNKNOWN", SECRET).list_queues()
    assert error_code(e) == "InvalidClientTokenId"
    assert status(e) == 403


def test_wrong_secret_is_signature_does_not_match(secured):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        make_client(secured, KEY, "wrong").list_queues()
    assert error_code(e) == "SignatureDoesNotMatch"
    assert status(e) == 403


def test_tampered_body_is_refused(secured):
    r = sign_json(secured.url("aws"), "AmazonSQS.ListQueues", {})
    assert r.status_code == 200
    req = r.request
    tampered = requests.post(secured.url("aws") + "/", headers=dict(req.headers), data=b'{"QueueNamePrefix":"x"}', timeout=10)
    assert tampered.status_code == 403
    assert tampered.headers["x-amzn-query-error"].startswith("SignatureDoesNotMatch;")


def test_old_request_is_refused_as_expired(secured):
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    r = sign_json(secured.url("aws"), "AmazonSQS.ListQueues", {}, when=old)
    assert r.status_code == 403
    assert r.headers["x-amzn-query-error"].startswith("SignatureDoesNotMatch;")
    assert "Signature expired" in r.json()["message"]
    recent = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    assert sign_json(secured.url("aws"), "AmazonSQS.ListQueues", {}, when=recent).status_code == 200


def test_unsigned_request_is_refused(secured):
    r = requests.post(
        secured.url("aws") + "/",
        headers={"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0"},
        data="{}",
        timeout=10,
    )
    assert r.status_code == 403
    assert r.headers["x-amzn-query-error"].startswith("MissingAuthenticationToken;")


def test_query_protocol_is_verified_too(secured):
    r, x = signed_query(secured, {"Action": "ListQueues"}, access_key=KEY, secret_key=SECRET)
    assert r.status_code == 200, r.text
    r, x = signed_query(secured, {"Action": "ListQueues"}, access_key=KEY, secret_key="nope")
    assert r.status_code == 403
    assert xml_text(x, "sqs:Error/sqs:Code") == "SignatureDoesNotMatch"


def presign(secured, expires):
    req = botocore.awsrequest.AWSRequest(
        method="GET", url=secured.url("aws") + "/", params={"Action": "ListQueues", "Version": "2012-11-05"}
    )
    auth = botocore.auth.SigV4QueryAuth(botocore.credentials.Credentials(KEY, SECRET), "sqs", REGION, expires=expires)
    auth.add_auth(req)
    return req.prepare().url


def test_presigned_url(secured):
    url = presign(secured, 300)
    assert "X-Amz-Signature=" in url
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    bad = url.replace("Action=ListQueues", "Action=ListQueues&QueueNamePrefix=x")
    assert requests.get(bad, timeout=10).status_code == 403


def test_expired_presigned_url(secured, monkeypatch):
    old = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: old)
    r = requests.get(presign(secured, 60), timeout=10)
    assert r.status_code == 400
    assert "RequestExpired" in r.text
