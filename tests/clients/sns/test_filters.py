"""Every filter operator, on message attributes and on message bodies, checked by which queues
receive which messages (boto3)."""

import json

from snslib import drain, subscribe_queue, unique

S = lambda v: {"DataType": "String", "StringValue": v}  # noqa: E731
N = lambda v: {"DataType": "Number", "StringValue": str(v)}  # noqa: E731
A = lambda v: {"DataType": "String.Array", "StringValue": json.dumps(v)}  # noqa: E731

BODIES = {
    "m1": {"id": "m1", "color": "red", "price": 50, "tags": ["a", "b"], "ip": "10.0.0.5", "name": "Order-1",
           "order": {"items": [{"sku": "A1"}, {"sku": "B2"}]}},
    "m2": {"id": "m2", "color": "blue", "price": 150, "tags": ["c"], "ip": "192.168.1.1", "name": "order-2",
           "order": {"items": [{"sku": "C3"}]}},
    "m3": {"id": "m3", "color": "Red", "name": "refund.png"},
    "m4": {"id": "m4"},
}
ATTRS = {
    "m1": {"color": S("red"), "price": N(50), "tags": A(["a", "b"]), "ip": S("10.0.0.5"), "name": S("Order-1")},
    "m2": {"color": S("blue"), "price": N(150), "tags": A(["c"]), "ip": S("192.168.1.1"), "name": S("order-2")},
    "m3": {"color": S("Red"), "name": S("refund.png")},
    "m4": {},
    "m5": {},
}

# (policy, messages matched by attributes, messages matched by body)
CASES = [
    ({"color": ["red"]}, {"m1"}, {"m1"}),
    ({"price": [50]}, {"m1"}, {"m1"}),
    ({"name": [{"prefix": "order"}]}, {"m2"}, {"m2"}),
    ({"name": [{"suffix": ".png"}]}, {"m3"}, {"m3"}),
    ({"color": [{"equals-ignore-case": "RED"}]}, {"m1", "m3"}, {"m1", "m3"}),
    ({"color": [{"anything-but": ["red", "blue"]}]}, {"m3"}, {"m3"}),
    ({"name": [{"anything-but": {"prefix": "order"}}]}, {"m1", "m3"}, {"m1", "m3"}),
    ({"price": [{"anything-but": [50]}]}, {"m2"}, {"m2"}),
    ({"price": [{"numeric": [">", 100, "<=", 200]}]}, {"m2"}, {"m2"}),
    ({"price": [{"numeric": ["=", 50]}]}, {"m1"}, {"m1"}),
    ({"price": [{"exists": True}]}, {"m1", "m2"}, {"m1", "m2"}),
    # m5's body is not JSON: body policies never match it; it has no attributes at all.
    ({"price": [{"exists": False}]}, {"m3", "m4", "m5"}, {"m3", "m4"}),
    ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"m1"}, {"m1"}),
    ({"tags": ["b"]}, {"m1"}, {"m1"}),
    ({"$or": [{"color": ["blue"]}, {"price": [{"numeric": ["<", 100]}]}]}, {"m1", "m2"}, {"m1", "m2"}),
    ({"color": ["red", "blue"], "price": [{"numeric": [">", 100]}]}, {"m2"}, {"m2"}),
    ({"color": ["green"]}, set(), set()),
]
BODY_ONLY = [
    ({"order": {"items": {"sku": [{"prefix": "B"}]}}}, {"m1"}),
    ({"order": {"items": {"sku": ["C3"]}}, "color": ["blue"]}, {"m2"}),
]


def test_every_operator_on_attributes_and_bodies(sns, sqs):
    arn = sns.create_topic(Name=unique("filters"))["TopicArn"]
    subs = []
    for policy, by_attr, by_body in CASES:
        subs.append((subscribe_queue(sns, sqs, arn, policy)[0], policy, "MessageAttributes", by_attr))
        subs.append((subscribe_queue(sns, sqs, arn, policy, scope="MessageBody")[0], policy, "MessageBody", by_body))
    for policy, by_body in BODY_ONLY:
        subs.append((subscribe_queue(sns, sqs, arn, policy, scope="MessageBody")[0], policy, "MessageBody", by_body))
    all_url, _ = subscribe_queue(sns, sqs, arn)
    for name in ["m1", "m2", "m3", "m4", "m5"]:
        body = json.dumps(BODIES[name]) if name in BODIES else "m5 is plain text"
        kw = {"MessageAttributes": ATTRS[name]} if ATTRS[name] else {}
        sns.publish(TopicArn=arn, Message=body, **kw)
    assert len(drain(sqs, all_url, expect=5)) == 5

    def name_of(message):
        try:
            return json.loads(message)["id"]
        except ValueError:
            return "m5"

    failures = []
    for url, policy, scope, expected in subs:
        got = {name_of(json.loads(m["Body"])["Message"]) for m in drain(sqs, url, expect=len(expected), quiet_s=0.2)}
        got |= {name_of(json.loads(m["Body"])["Message"]) for m in drain(sqs, url, quiet_s=0.1)}
        if got != expected:
            failures.append(f"{scope} {json.dumps(policy)}: expected {sorted(expected)}, got {sorted(got)}")
    assert not failures, "\n".join(failures)


def test_filter_policy_change_applies_to_next_publish(sns, sqs):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    url, sub = subscribe_queue(sns, sqs, arn, {"k": ["a"]}, raw=True)
    sns.publish(TopicArn=arn, Message="one", MessageAttributes={"k": S("b")})
    sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="FilterPolicy", AttributeValue=json.dumps({"k": ["b"]}))
    sns.publish(TopicArn=arn, Message="two", MessageAttributes={"k": S("b")})
    assert [m["Body"] for m in drain(sqs, url, expect=1)] == ["two"]
