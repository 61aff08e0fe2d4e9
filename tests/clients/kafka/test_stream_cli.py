"""`ferry stream …` CLI against a running server, with a Kafka client on the same stream."""

import json
import subprocess
import time

from confluent_kafka import Producer

from kafkalib import ferry_binary


def cli(kafka, *args, input=None, check=True):
    """`ferry stream <args> --server <url>` (client options belong to the subcommand)."""
    return subprocess.run(
        [ferry_binary(), "stream", *args, "--server", kafka.http_url],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def test_stream_cli_round_trip(kafka, topic_name):
    cli(kafka, "create", topic_name, "--partitions", "2", "--config", "retention.ms=3600000")
    listed = cli(kafka, "list").stdout
    assert topic_name in listed
    d = json.loads(cli(kafka, "--json", "describe", topic_name).stdout)
    assert len(d["partitions"]) == 2 and d["config"]["retention.ms"] == "3600000"

    out = cli(kafka, "--json", "produce", topic_name, "--partition", "1", "--key-separator", ":",
              input="k1:one\nk2:two\nthree\n").stdout
    assert [o["offset"] for o in json.loads(out)["offsets"]] == [0, 1, 2]
    cli(kafka, "produce", topic_name, "four", "--key", "k4", "--partition", "1", "-H", "h=v")

    lines = cli(kafka, "--json", "consume", topic_name, "--from-beginning", "--wait", "0").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["partition"], r["offset"], r["key"], r["value"]) for r in records] == [
        (1, 0, "k1", "one"), (1, 1, "k2", "two"), (1, 2, None, "three"), (1, 3, "k4", "four"),
    ]
    assert records[3]["headers"] == {"h": "v"}
    lines = cli(kafka, "--json", "consume", topic_name, "-p", "1", "--offset", "2", "--wait", "0").stdout
    assert [json.loads(x)["value"] for x in lines.splitlines()] == ["three", "four"]
    lines = cli(kafka, "--json", "consume", topic_name, "--since", "10m", "--wait", "0").stdout
    assert len(lines.splitlines()) == 4

    # tail follows records produced by a Kafka client.
    tail = subprocess.Popen(
        [ferry_binary(), "stream", "tail", topic_name, "--json", "--server", kafka.http_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        p = Producer({"bootstrap.servers": kafka.bootstrap})
        p.produce(topic_name, value=b"live", partition=0)
        p.flush(10)
        line = tail.stdout.readline()
        assert json.loads(line)["value"] == "live"
    finally:
        tail.kill()
        tail.wait()

    cli(kafka, "delete", topic_name)
    r = cli(kafka, "describe", topic_name, check=False)
    assert r.returncode == 1 and "StreamNotFound" in r.stderr
