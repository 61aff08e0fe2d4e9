"""An AWS CLI session against the AWS door (the CLI in the test virtualenv, via subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

AWS = str(Path(sys.executable).parent / "aws")


def aws(ferry, *args):
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="dummy",
        AWS_SECRET_ACCESS_KEY="dummy",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    out = subprocess.run(
        [AWS, "sqs", *args, "--endpoint-url", ferry.url("aws"), "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def test_cli_session(ferry):
    url = aws(ferry, "create-queue", "--queue-name", "cli-q")["QueueUrl"]
    assert url.endswith("/000000000000/cli-q")
    sent = aws(ferry, "send-message", "--queue-url", url, "--message-body", "from the cli")
    assert sent["MessageId"]
    got = aws(ferry, "receive-message", "--queue-url", url, "--wait-time-seconds", "5")["Messages"]
    assert [m["Body"] for m in got] == ["from the cli"]
    aws(ferry, "delete-message", "--queue-url", url, "--receipt-handle", got[0]["ReceiptHandle"])
    attrs = aws(ferry, "get-queue-attributes", "--queue-url", url, "--attribute-names", "All")["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert aws(ferry, "list-queues")["QueueUrls"] == [url]
    aws(ferry, "delete-queue", "--queue-url", url)
