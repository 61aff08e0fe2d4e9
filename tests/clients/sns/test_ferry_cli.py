"""The `ferry topic …` CLI against a running server (the real binary, via subprocess)."""

import json
import os
import subprocess
from pathlib import Path

from snslib import drain, make_client

FERRY_BIN = os.environ.get("FERRY_BIN", str(Path(__file__).resolve().parents[3] / "target" / "debug" / "ferry"))


def cli(server, *args, json_output=True):
    cmd = [FERRY_BIN, *args, "--server", server] + (["--json"] if json_output else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ, NO_COLOR="1"))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if json_output and out.stdout.strip() else out.stdout


def test_topic_cli(ferry):
    server = ferry.http_url
    run = cli
    run(server, "queue", "create", "cli-all", json_output=False)
    run(server, "queue", "create", "cli-paid", json_output=False)
    created = run(server, "topic", "create", "orders")
    assert created["arn"].endswith(":orders")
    assert "orders" in run(server, "topic", "list", json_output=False)
    run(server, "topic", "subscribe", "orders", "--queue", "cli-all", "--raw")
    sub = run(server, "topic", "subscribe", "orders", "--queue", "cli-paid", "--raw", "--filter", '{"status": ["paid"]}')
    assert sub["filter_policy"] == {"status": ["paid"]}
    run(server, "topic", "publish", "orders", "new order", "-a", "status=new")
    out = run(server, "topic", "publish", "orders", "paid order", "-a", "status=paid", "-a", "amount:Number=12")
    assert out["message_id"]
    sqs = make_client(ferry, "sqs")
    all_url = sqs.get_queue_url(QueueName="cli-all")["QueueUrl"]
    paid_url = sqs.get_queue_url(QueueName="cli-paid")["QueueUrl"]
    assert sorted(m["Body"] for m in drain(sqs, all_url, expect=2)) == ["new order", "paid order"]
    paid = drain(sqs, paid_url, expect=1)
    assert [m["Body"] for m in paid] == ["paid order"]
    assert paid[0]["MessageAttributes"]["amount"] == {"DataType": "Number", "StringValue": "12"}
    described = run(server, "topic", "describe", "orders")
    assert described["published"] == 2
    subs = run(server, "topic", "subscriptions", "orders")["subscriptions"]
    assert len(subs) == 2
    table = run(server, "topic", "subscriptions", "orders", json_output=False)
    assert "cli-paid" in table and "confirmed" in table
    run(server, "topic", "unsubscribe", "orders", sub["id"])
    assert len(run(server, "topic", "subscriptions", "orders")["subscriptions"]) == 1
    run(server, "topic", "delete", "orders")
    assert run(server, "topic", "list")["topics"] == []
