"""A real query-protocol SDK: boto3/botocore 1.33.13 (whose SQS model is `query`) in its own
virtualenv, driven through a subprocess, against the AWS door."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# Under target/ (ignored by git, rebuilt when missing).
VENV = REPO / "target" / "venv-sqs-query"
REQS = HERE / "requirements-query.txt"

SCRIPT = textwrap.dedent(
    """
    import json, sys, hashlib, boto3, botocore
    from botocore.config import Config
    assert botocore.__version__ == "1.33.13", botocore.__version__
    sqs = boto3.client("sqs", endpoint_url=sys.argv[1], region_name="us-east-1",
                       aws_access_key_id="dummy", aws_secret_access_key="dummy",
                       config=Config(retries={"max_attempts": 0}))
    assert sqs.meta.service_model.protocol == "query"
    out = {}
    url = sqs.create_queue(QueueName="legacy", Attributes={"VisibilityTimeout": "40"}, tags={"a": "b"})["QueueUrl"]
    out["url"] = url
    out["attrs"] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    sent = sqs.send_message(QueueUrl=url, MessageBody="old & <new>",
                            MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    out["sent"] = {k: sent[k] for k in ("MessageId", "MD5OfMessageBody", "MD5OfMessageAttributes")}
    batch = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "one"}, {"Id": "b", "MessageBody": "x", "DelaySeconds": 901}])
    out["batch"] = {"ok": [e["Id"] for e in batch["Successful"]], "failed": [(e["Id"], e["Code"]) for e in batch["Failed"]]}
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                              AttributeNames=["All"], MessageAttributeNames=["All"])["Messages"]
    out["received"] = sorted(m["Body"] for m in got)
    out["received_attrs"] = [m.get("MessageAttributes") for m in got if m["Body"] == "old & <new>"]
    out["receive_count"] = [m["Attributes"]["ApproximateReceiveCount"] for m in got]
    d = sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    out["deleted"] = len(d["Successful"])
    out["tags"] = sqs.list_queue_tags(QueueUrl=url)["Tags"]
    out["queues"] = sqs.list_queues()["QueueUrls"]
    try:
        sqs.get_queue_url(QueueName="nope")
    except sqs.exceptions.QueueDoesNotExist as e:
        out["error"] = [e.response["Error"]["Code"], e.response["Error"]["Type"]]
    try:
        sqs.create_queue(QueueName="legacy", Attributes={"VisibilityTimeout": "41"})
    except botocore.exceptions.ClientError as e:
        out["exists"] = e.response["Error"]["Code"]
    sqs.delete_queue(QueueUrl=url)
    print(json.dumps(out))
    """
)


def legacy_python():
    py = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != REQS.read_text():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-r", str(REQS)], check=True, timeout=600)
        stamp.write_text(REQS.read_text())
    return py


def test_boto3_1_33_speaks_query_to_ferry(ferry):
    py = legacy_python()
    r = subprocess.run([str(py), "-c", SCRIPT, ferry.url("aws")], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["url"].endswith("/000000000000/legacy")
    assert out["attrs"]["VisibilityTimeout"] == "40"
    assert out["sent"]["MD5OfMessageBody"] == hashlib.md5(b"old & <new>").hexdigest()
    assert out["batch"] == {"ok": ["a"], "failed": [["b", "InvalidParameterValue"]]}
    assert out["received"] == ["old & <new>", "one"]
    assert out["received_attrs"] == [{"k": {"DataType": "String", "StringValue": "v"}}]
    assert out["receive_count"] == ["1", "1"]
    assert out["deleted"] == 2
    assert out["tags"] == {"a": "b"}
    assert out["queues"] == [out["url"]]
    assert out["error"] == ["AWS.SimpleQueueService.NonExistentQueue", "Sender"]
    assert out["exists"] == "QueueAlreadyExists"

