"""Crash test: SIGKILL during publish load (Publish and PublishBatch) to a topic with several
(filtered) queue subscriptions; after restart every acknowledged publish is in every matching
queue, and every publish is in all of its matching queues or in none (boto3)."""

import json
import threading
import time

import botocore.exceptions
from botocore.config import Config
import boto3

from snslib import ACCOUNT, REGION, drain, make_client

WRITERS = 8
BATCH = 5
LOAD_SECONDS = 2.0


def client(ferry, service):
    return boto3.client(service, endpoint_url=ferry.url("aws"), region_name=REGION,
                        aws_access_key_id="dummy", aws_secret_access_key="dummy",
                        config=Config(retries={"max_attempts": 0}, connect_timeout=2, read_timeout=5))


def test_kill_during_publish_load(ferry_factory, tmp_path):
    data = tmp_path / "crash"
    ferry = ferry_factory(doors=("http", "aws"), data_dir=data)
    sns, sqs = make_client(ferry, "sns"), make_client(ferry, "sqs")
    arn = sns.create_topic(Name="load")["TopicArn"]
    queues = {"all": None, "all_raw": None, "even": {"parity": ["even"]}, "odd": {"parity": ["odd"]},
              "big": {"n": [{"numeric": [">=", 500]}]}}
    for name, policy in queues.items():
        sqs.create_queue(QueueName=name)
        attrs = {"RawMessageDelivery": "true"} if name == "all_raw" else {}
        if policy:
            attrs["FilterPolicy"] = json.dumps(policy)
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", Attributes=attrs)

    acked = []
    batched = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def attributes(n):
        return {"parity": {"DataType": "String", "StringValue": "even" if n % 2 == 0 else "odd"},
                "n": {"DataType": "Number", "StringValue": str(n % 1000)}}

    def writer(w):
        """Even writers publish one message per call, odd ones batches of BATCH."""
        c = client(ferry, "sns")
        i = 0
        while not stop.is_set():
            count = 1 if w % 2 == 0 else BATCH
            ns = [w * 1_000_000 + i + k for k in range(count)]
            i += count
            try:
                if count == 1:
                    c.publish(TopicArn=arn, Message=f"msg-{ns[0]}", MessageAttributes=attributes(ns[0]))
                    done = ns
                else:
                    r = c.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
                        {"Id": f"e{n}", "Message": f"msg-{n}", "MessageAttributes": attributes(n)}
                        for n in ns])
                    # Only the successful entries are acknowledged (a failed one may be in
                    # all of its queues or in none, like any unacknowledged publish).
                    done = [int(e["Id"][1:]) for e in r["Successful"]]
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                return
            with lock:
                acked.extend(done)
                batched[0] += len(done) if count > 1 else 0

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    time.sleep(LOAD_SECONDS)
    ferry.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 50, f"too little load before the kill: {len(acked)}"
    assert batched[0] > 20, f"too few batch-published messages before the kill: {batched[0]}"
    print(f"acknowledged publishes before the kill: {len(acked)} ({batched[0]} in batches)")

    ferry = ferry_factory(doors=("http", "aws"), data_dir=data)
    sqs = make_client(ferry, "sqs")
    got = {}
    for name in queues:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        bodies = [m["Body"] if name == "all_raw" else json.loads(m["Body"])["Message"]
                  for m in drain(sqs, url, timeout_s=60, quiet_s=1.0)]
        got[name] = {int(b.split("-")[1]) for b in bodies}

    def matching(n):
        out = {"all", "all_raw", "even" if n % 2 == 0 else "odd"}
        if n % 1000 >= 500:
            out.add("big")
        return out

    missing = [(n, q) for n in acked for q in matching(n) if n not in got[q]]
    assert not missing, f"{len(missing)} acknowledged deliveries lost, e.g. {missing[:5]}"
    wrong = [(n, q) for q, ns in got.items() for n in ns if q not in matching(n)]
    assert not wrong, f"filtered deliveries in the wrong queue: {wrong[:5]}"
    seen = set().union(*got.values())
    replayed = [line for line in ferry.log_lines if "interrupted by a crash" in line]
    print(f"fan-outs replayed at restart: {replayed}")
    partial = [n for n in seen if any(n not in got[q] for q in matching(n))]
    assert not partial, f"publishes that reached only some of their queues: {partial[:5]}"
