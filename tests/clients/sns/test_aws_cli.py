"""An AWS CLI session against the SNS API (the CLI in the test virtualenv, via subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from snslib import drain, make_client

AWS = str(Path(sys.executable).parent / "aws")


def aws(ferry, service, *args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="dummy", AWS_SECRET_ACCESS_KEY="dummy", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    out = subprocess.run([AWS, service, *args, "--endpoint-url", ferry.url("aws"), "--output", "json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def test_cli_session(ferry):
    topic = aws(ferry, "sns", "create-topic", "--name", "cli-topic")["TopicArn"]
    url = aws(ferry, "sqs", "create-queue", "--queue-name", "cli-sub")["QueueUrl"]
    qarn = aws(ferry, "sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "QueueArn")["Attributes"]["QueueArn"]
    sub = aws(ferry, "sns", "subscribe", "--topic-arn", topic, "--protocol", "sqs", "--notification-endpoint", qarn,
              "--attributes", json.dumps({"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"k": ["v"]})}))
    assert sub["SubscriptionArn"].startswith(topic)
    aws(ferry, "sns", "publish", "--topic-arn", topic, "--message", "filtered out")
    aws(ferry, "sns", "publish", "--topic-arn", topic, "--message", "from the cli",
        "--message-attributes", json.dumps({"k": {"DataType": "String", "StringValue": "v"}}))
    sqs = make_client(ferry, "sqs")
    assert [m["Body"] for m in drain(sqs, url, expect=1)] == ["from the cli"]
    assert aws(ferry, "sns", "list-subscriptions-by-topic", "--topic-arn", topic)["Subscriptions"][0]["Endpoint"] == qarn
    aws(ferry, "sns", "delete-topic", "--topic-arn", topic)
    assert aws(ferry, "sns", "list-topics")["Topics"] == []
