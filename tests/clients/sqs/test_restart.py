"""Durability through the AWS door: SIGKILL the server, restart it on the same data directory,
and check that messages, receive counts, in-flight leases, FIFO deduplication and FIFO receive
attempts survived."""

from conftest import make_client, receive_all


def test_state_survives_kill_and_restart(ferry_factory):
    f = ferry_factory(doors=("http", "aws"))
    sqs = make_client(f)
    std = sqs.create_queue(QueueName="durable", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    fifo = sqs.create_queue(QueueName="durable.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    sqs.send_message_batch(QueueUrl=std, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(5)])
    # m-a: received twice (receive count 2), visible again.
    first = sqs.receive_message(QueueUrl=std, VisibilityTimeout=0, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    second = sqs.receive_message(QueueUrl=std, VisibilityTimeout=0, AttributeNames=["ApproximateReceiveCount"])["Messages"]
    counts = {first["MessageId"]: 1}
    for m in second:
        counts[m["MessageId"]] = int(m["Attributes"]["ApproximateReceiveCount"])
    # One message leased for 300 s: it must stay invisible after the restart.
    leased = sqs.receive_message(QueueUrl=std, VisibilityTimeout=300)["Messages"][0]
    sent = sqs.send_message(QueueUrl=fifo, MessageBody="once", MessageGroupId="g", MessageDeduplicationId="dedup-1")
    # A FIFO receive whose answer the client "lost": it retries with the same attempt id.
    attempts = sqs.create_queue(QueueName="attempts.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    sqs.send_message_batch(QueueUrl=attempts, Entries=[{"Id": str(i), "MessageBody": f"a{i}", "MessageGroupId": "g"} for i in range(3)])
    lost = sqs.receive_message(QueueUrl=attempts, MaxNumberOfMessages=2, VisibilityTimeout=300, ReceiveRequestAttemptId="try-1")["Messages"]
    assert [m["Body"] for m in lost] == ["a0", "a1"]
    f.kill()

    g = ferry_factory(doors=("http", "aws"), data_dir=f.data_dir)
    sqs = make_client(g)
    std = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
    fifo = sqs.get_queue_url(QueueName="durable.fifo")["QueueUrl"]
    a = sqs.get_queue_attributes(QueueUrl=std, AttributeNames=["All"])["Attributes"]
    assert a["VisibilityTimeout"] == "300"
    assert a["ApproximateNumberOfMessages"] == "4"
    assert a["ApproximateNumberOfMessagesNotVisible"] == "1"
    got = receive_all(sqs, std, 4, AttributeNames=["ApproximateReceiveCount"])
    assert sorted(m["Body"] for m in got) == sorted(f"m{i}" for i in range(5) if f"m{i}" != leased["Body"])
    assert leased["MessageId"] not in {m["MessageId"] for m in got}
    for m in got:
        before = counts.get(m["MessageId"], 0)
        # Every receive before the crash counts, plus this one.
        assert int(m["Attributes"]["ApproximateReceiveCount"]) >= before + 1
    # The lease's receipt handle from before the crash still deletes the message.
    sqs.delete_message(QueueUrl=std, ReceiptHandle=leased["ReceiptHandle"])
    assert sqs.get_queue_attributes(QueueUrl=std, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])["Attributes"][
        "ApproximateNumberOfMessagesNotVisible"
    ] == str(len(got))
    # FIFO deduplication state survived: the retry is recognised, not enqueued twice.
    again = sqs.send_message(QueueUrl=fifo, MessageBody="once", MessageGroupId="g", MessageDeduplicationId="dedup-1")
    assert again["MessageId"] == sent["MessageId"]
    fifo_msgs = receive_all(sqs, fifo, 2, timeout_s=2)
    assert [m["Body"] for m in fifo_msgs] == ["once"]
    # The retried receive attempt gets the same messages with the same receipt handles...
    attempts = sqs.get_queue_url(QueueName="attempts.fifo")["QueueUrl"]
    retried = sqs.receive_message(QueueUrl=attempts, MaxNumberOfMessages=2, VisibilityTimeout=300, ReceiveRequestAttemptId="try-1")["Messages"]
    assert [(m["MessageId"], m["ReceiptHandle"]) for m in retried] == [(m["MessageId"], m["ReceiptHandle"]) for m in lost]
    # ...while a new attempt finds the group still blocked by those in-flight messages.
    assert "Messages" not in sqs.receive_message(QueueUrl=attempts, ReceiveRequestAttemptId="try-2")
