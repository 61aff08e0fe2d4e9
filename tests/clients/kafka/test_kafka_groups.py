"""Consumer groups: rebalance across members, committed offsets, resume, list/describe/delete."""

import time

from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafkalib import wait_for


def setup_topic(kafka, topic, partitions=3, records=90):
    a = AdminClient({"bootstrap.servers": kafka.bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=partitions)])[topic].result(timeout=10)
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(records):
        p.produce(topic, value=f"m{i}".encode(), partition=i % partitions)
    assert p.flush(10) == 0


def member(kafka, group, **conf):
    return Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            **conf,
        }
    )


def test_two_members_share_three_partitions_and_rebalance(kafka, topic_name):
    setup_topic(kafka, topic_name)
    group = "g-share"
    a = member(kafka, group)
    b = member(kafka, group)
    a.subscribe([topic_name])
    b.subscribe([topic_name])

    def assigned():
        a.poll(0.1)
        b.poll(0.1)
        pa = {tp.partition for tp in a.assignment()}
        pb = {tp.partition for tp in b.assignment()}
        return (pa, pb) if pa and pb and not (pa & pb) and (pa | pb) == {0, 1, 2} else None

    pa, pb = wait_for(assigned, timeout=60, what="both members assigned disjoint partitions")
    assert len(pa) + len(pb) == 3

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert desc.state == ConsumerGroupState.STABLE
    assert len(desc.members) == 2

    # B leaves: A gets every partition.
    b.close()

    def all_to_a():
        a.poll(0.1)
        return {tp.partition for tp in a.assignment()} == {0, 1, 2}

    wait_for(all_to_a, timeout=60, what="rebalance to the remaining member")
    a.close()


def test_commit_and_resume_after_restart(kafka, topic_name):
    setup_topic(kafka, topic_name, partitions=3, records=90)
    group = "g-resume"
    c = member(kafka, group)
    c.subscribe([topic_name])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 45 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen.append(m)
    assert len(seen) >= 45
    c.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)}
    c.close()
    assert sum(max(o, 0) for o in committed.values()) == len(seen)

    # A new consumer in the same group resumes after the committed offsets.
    c2 = member(kafka, group)
    c2.subscribe([topic_name])
    rest = []
    deadline = time.monotonic() + 30
    while len(rest) < 90 - len(seen) and time.monotonic() < deadline:
        m = c2.poll(0.5)
        if m is not None and not m.error():
            rest.append(m)
    c2.close()
    got = {m.value() for m in seen} | {m.value() for m in rest}
    assert len(rest) == 90 - len(seen)
    assert got == {f"m{i}".encode() for i in range(90)}
    for m in rest:
        assert m.offset() >= committed[m.partition()]


def test_list_describe_delete_groups(kafka, topic_name):
    setup_topic(kafka, topic_name, partitions=1, records=3)
    c = member(kafka, "g-admin")
    c.subscribe([topic_name])
    wait_for(lambda: c.poll(0.2) is not None, timeout=30, what="a record")
    c.commit(asynchronous=False)
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    groups = admin.list_consumer_groups().result(timeout=10)
    assert "g-admin" in {g.group_id for g in groups.valid}
    # A group with members cannot be deleted.
    try:
        admin.delete_consumer_groups(["g-admin"])["g-admin"].result(timeout=10)
        raise AssertionError("deleted a group with members")
    except Exception as e:  # KafkaException(NON_EMPTY_GROUP)
        assert "NON_EMPTY_GROUP" in str(e)
    c.close()

    def empty():
        d = admin.describe_consumer_groups(["g-admin"])["g-admin"].result(timeout=10)
        return d.state == ConsumerGroupState.EMPTY

    wait_for(empty, timeout=30, what="the group to become empty")
    offsets = admin.list_consumer_group_offsets(
        [__import__("confluent_kafka").ConsumerGroupTopicPartitions("g-admin")]
    )["g-admin"].result(timeout=10)
    assert any(tp.offset > 0 for tp in offsets.topic_partitions)
    admin.delete_consumer_groups(["g-admin"])["g-admin"].result(timeout=10)
    groups = admin.list_consumer_groups().result(timeout=10)
    assert "g-admin" not in {g.group_id for g in groups.valid}


def test_session_timeout_removes_a_silent_member(kafka, topic_name):
    """A member that stops heartbeating (process frozen) is removed after its session timeout."""
    import os
    import signal
    import subprocess
    import sys

    setup_topic(kafka, topic_name, partitions=2, records=2)
    group = "g-timeout"
    script = f"""
import sys, time
from confluent_kafka import Consumer
c = Consumer({{"bootstrap.servers": "{kafka.bootstrap}", "group.id": "{group}",
               "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest"}})
c.subscribe(["{topic_name}"])
while True:
    c.poll(0.2)
    if c.assignment():
        print("assigned", flush=True)
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "assigned"
        a = member(kafka, group, **{"session.timeout.ms": 6000})
        a.subscribe([topic_name])
        wait_for(lambda: (a.poll(0.1), len(a.assignment()) == 1)[1], timeout=60, what="shared assignment")
        os.kill(child.pid, signal.SIGSTOP)  # frozen: no heartbeats, no leave
        wait_for(lambda: (a.poll(0.1), len(a.assignment()) == 2)[1], timeout=60, what="takeover after session timeout")
        a.close()
    finally:
        child.kill()
        child.wait()


def read_line_while_polling(process, consumer, timeout=60):
    """The child's next output line, polling `consumer` meanwhile (a consumer that is not
    polled cannot take part in a rebalance, which would stall the child's join)."""
    import select

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll(0.1)
        if process.poll() is not None:
            raise AssertionError(f"the child exited with {process.returncode}")
        if select.select([process.stdout], [], [], 0)[0]:
            return process.stdout.readline().strip()
    raise AssertionError("timed out waiting for the child's output")


def test_static_member_restart_keeps_its_partition_without_a_rebalance(kafka, topic_name):
    """KIP-345: a consumer with group.instance.id that is killed and restarted within its session
    timeout gets its partition back, and the other member is not rebalanced. The restarted member
    is not the group's leader (a restarted leader makes the group rebalance), so `b` joins first
    and takes both partitions before the other member starts: the leader stays across rebalances."""
    import subprocess
    import sys

    setup_topic(kafka, topic_name, partitions=2, records=2)
    group = "g-static"
    script = f"""
from confluent_kafka import Consumer
c = Consumer({{"bootstrap.servers": "{kafka.bootstrap}", "group.id": "{group}",
               "group.instance.id": "static-a", "session.timeout.ms": 30000,
               "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest"}})
c.subscribe(["{topic_name}"])
while len(c.assignment()) != 1:
    c.poll(0.1)
print("assigned", [tp.partition for tp in c.assignment()], flush=True)
while True:
    c.poll(0.2)
"""
    revoked = []
    b = member(kafka, group, **{"group.instance.id": "static-b", "session.timeout.ms": 30000})
    b.subscribe([topic_name], on_revoke=lambda consumer, partitions: revoked.append(partitions))
    wait_for(lambda: (b.poll(0.1), len(b.assignment()) == 2)[1], timeout=60, what="b alone")
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    second = None
    try:
        line = read_line_while_polling(first, b)
        wait_for(lambda: (b.poll(0.1), len(b.assignment()) == 1)[1], timeout=60, what="b's share")
        b_partitions = {tp.partition for tp in b.assignment()}
        assert line == f"assigned {sorted({0, 1} - b_partitions)}"
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert sorted(m.group_instance_id for m in desc.members) == ["static-a", "static-b"]
        revoked.clear()

        first.kill()  # no LeaveGroup: the process is gone
        first.wait()
        second = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        # Well within the 30 s session timeout, and without a rebalance.
        assert read_line_while_polling(second, b, timeout=20) == line
        for _ in range(20):  # two more seconds of b's life: still no rebalance
            b.poll(0.1)
        assert revoked == []
        assert {tp.partition for tp in b.assignment()} == b_partitions
    finally:
        for p in (first, second):
            if p is not None:
                p.kill()
                p.wait()
        b.close()
