"""HTTP push: confirmation handshake, delivery, retries with backoff, retry phases, throttling,
dead-letter queue, a slow endpoint not delaying others, and retries surviving a crash (boto3 + a
local HTTP endpoint)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.exceptions
import pytest
import requests

from snslib import drain, error_code, make_client, make_queue, unique, wait_until

FAST_RETRIES = json.dumps({"healthyRetryPolicy": {"numRetries": 2, "minDelayTarget": 1, "maxDelayTarget": 1}})


class Endpoint:
    """A local HTTP endpoint on a free port: records every POST, answers with scripted statuses."""

    def __init__(self):
        self.posts = []
        self.times = []  # monotonic arrival time of each POST
        self.statuses = []  # consumed one per POST; 200 when empty
        self.gate = None  # when set, POSTs wait for it
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                if endpoint.gate is not None:
                    endpoint.gate.wait(30)
                with endpoint.lock:
                    endpoint.posts.append((dict(self.headers), body))
                    endpoint.times.append(time.monotonic())
                    code = endpoint.statuses.pop(0) if endpoint.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, kind):
        with self.lock:
            return [(h, json.loads(b)) for h, b in self.posts if h.get("x-amz-sns-message-type") == kind]

    def close(self):
        self.server.shutdown()


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.close()


def confirm_via_subscribe_url(endpoint):
    assert wait_until(lambda: endpoint.of_type("SubscriptionConfirmation"))
    _, conf = endpoint.of_type("SubscriptionConfirmation")[-1]
    assert conf["Type"] == "SubscriptionConfirmation"
    assert conf["Token"]
    r = requests.get(conf["SubscribeURL"], timeout=10)
    assert r.status_code == 200, r.text
    return conf


def test_handshake_delivery_retries_and_dead_letter(sns, sqs, endpoint):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    dlq_url, dlq_arn = make_queue(sqs)
    r = sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url, Attributes={
        "DeliveryPolicy": FAST_RETRIES, "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})})
    assert r["SubscriptionArn"] == "pending confirmation"
    sub = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"][0]
    assert sub["SubscriptionArn"] == "PendingConfirmation"
    # Nothing is delivered before confirmation.
    sns.publish(TopicArn=arn, Message="too early")
    conf = confirm_via_subscribe_url(endpoint)
    assert conf["TopicArn"] == arn
    sub = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"][0]
    assert sub["SubscriptionArn"].startswith(arn + ":")
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
    assert attrs["PendingConfirmation"] == "false"

    sns.publish(TopicArn=arn, Message="hello", Subject="s",
                MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    assert wait_until(lambda: endpoint.of_type("Notification"))
    headers, n = endpoint.of_type("Notification")[0]
    assert n["Message"] == "hello"
    assert n["Subject"] == "s"
    assert n["TopicArn"] == arn
    assert n["MessageAttributes"]["k"] == {"Type": "String", "Value": "v"}
    assert headers["x-amz-sns-topic-arn"] == arn
    assert headers["x-amz-sns-subscription-arn"] == sub["SubscriptionArn"]
    assert headers["x-amz-sns-message-id"] == n["MessageId"]

    # 500 on the first attempt, then success: delivered by a retry.
    endpoint.statuses = [500]
    sns.publish(TopicArn=arn, Message="retried")
    assert wait_until(lambda: [b for _, b in endpoint.of_type("Notification") if b["Message"] == "retried"].__len__() == 2)

    # 500 on every attempt (1 + 2 retries): dead-lettered after the last.
    endpoint.statuses = [500, 500, 500]
    sns.publish(TopicArn=arn, Message="doomed")
    dead = drain(sqs, dlq_url, expect=1, timeout_s=20)
    assert [json.loads(m["Body"])["Message"] for m in dead] == ["doomed"]
    attempts = [b for _, b in endpoint.of_type("Notification") if b["Message"] == "doomed"]
    assert len(attempts) == 3
    assert all(b["Message"] != "too early" for _, b in endpoint.of_type("Notification"))


def test_confirm_subscription_action_and_raw_delivery(sns, endpoint):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url, Attributes={"RawMessageDelivery": "true"})
    assert wait_until(lambda: endpoint.of_type("SubscriptionConfirmation"))
    token = endpoint.of_type("SubscriptionConfirmation")[0][1]["Token"]
    sub_arn = sns.confirm_subscription(TopicArn=arn, Token=token)["SubscriptionArn"]
    assert sub_arn.startswith(arn + ":")
    sns.publish(TopicArn=arn, Message="raw payload")
    assert wait_until(lambda: any(b == "raw payload" for _, b in endpoint.posts))
    headers = [h for h, b in endpoint.posts if b == "raw payload"][0]
    assert headers["x-amz-sns-rawdelivery"] == "true"
    with pytest.raises(Exception):
        sns.confirm_subscription(TopicArn=arn, Token="wrong")


def test_slow_endpoint_does_not_delay_others(sns, endpoint):
    slow = endpoint
    fast = Endpoint()
    try:
        arn = sns.create_topic(Name=unique("t"))["TopicArn"]
        for e in (slow, fast):
            sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=e.url)
            confirm_via_subscribe_url(e)
        slow.gate = threading.Event()  # the slow endpoint hangs until the fast one got its message
        sns.publish(TopicArn=arn, Message="m")  # returns although an endpoint hangs
        assert wait_until(lambda: fast.of_type("Notification"))
        assert not slow.of_type("Notification")
        slow.gate.set()
        assert wait_until(lambda: slow.of_type("Notification"))
    finally:
        fast.close()


def test_pending_retries_survive_a_crash(ferry_factory, tmp_path, endpoint):
    data = tmp_path / "crash-data"
    ferry = ferry_factory(doors=("http", "aws"), data_dir=data)
    sns = make_client(ferry, "sns")
    arn = sns.create_topic(Name="t")["TopicArn"]
    policy = json.dumps({"healthyRetryPolicy": {"numRetries": 50, "minDelayTarget": 1, "maxDelayTarget": 1}})
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url, Attributes={"DeliveryPolicy": policy})
    confirm_via_subscribe_url(endpoint)
    endpoint.statuses = [500] * 1000
    sns.publish(TopicArn=arn, Message="keep me")
    assert wait_until(lambda: len(endpoint.of_type("Notification")) >= 2)  # retrying
    # Kill between attempts (the 1 s retry delay), not during a POST (whose lease is longer).
    time.sleep(0.4)
    ferry.kill()
    endpoint.statuses = []
    before = len(endpoint.of_type("Notification"))
    ferry = ferry_factory(doors=("http", "aws"), data_dir=data)
    # The restarted server retries the same message (its attempt count and delay are durable).
    assert wait_until(lambda: len(endpoint.of_type("Notification")) > before, timeout_s=30)
    assert all(b["Message"] == "keep me" for _, b in endpoint.of_type("Notification"))
    # ...and, now that the endpoint answers 200, stops retrying.
    n = len(endpoint.of_type("Notification"))
    assert not wait_until(lambda: len(endpoint.of_type("Notification")) > n, timeout_s=2.5)


def test_graceful_stop_with_http_subscriptions(ferry, sns, endpoint):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url)
    confirm_via_subscribe_url(endpoint)
    endpoint.statuses = [500] * 100
    sns.publish(TopicArn=arn, Message="pending at shutdown")
    assert wait_until(lambda: endpoint.of_type("Notification"))
    assert ferry.stop() == 0


def test_immediate_retry_phase(sns, sqs, endpoint):
    # Every retry is in the immediate phase: 4 attempts at once although the delays are 60 s.
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    dlq_url, dlq_arn = make_queue(sqs)
    policy = {"healthyRetryPolicy": {"numRetries": 3, "numNoDelayRetries": 3,
                                     "minDelayTarget": 60, "maxDelayTarget": 60}}
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url, Attributes={
        "DeliveryPolicy": json.dumps(policy), "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})})
    confirm_via_subscribe_url(endpoint)
    endpoint.statuses = [500] * 4
    sns.publish(TopicArn=arn, Message="no delay")
    assert [json.loads(m["Body"])["Message"] for m in drain(sqs, dlq_url, expect=1, timeout_s=20)] == ["no delay"]
    assert len(endpoint.of_type("Notification")) == 4


def test_delivery_policy_validation(sns, endpoint):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    bad = [
        {"healthyRetryPolicy": {"numRetries": 3, "numNoDelayRetries": 2, "numMinDelayRetries": 2}},
        {"healthyRetryPolicy": {"numRetries": 101}},
        {"healthyRetryPolicy": {"minDelayTarget": 30, "maxDelayTarget": 10}},
        {"healthyRetryPolicy": {"numMaxDelayRetries": -1}},
        {"healthyRetryPolicy": {"backoffFunction": "cubic"}},
        {"throttlePolicy": {"maxReceivesPerSecond": 0}},
    ]
    for policy in bad:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url,
                          Attributes={"DeliveryPolicy": json.dumps(policy)})
        assert error_code(e) == "InvalidParameter", policy
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sns.set_topic_attributes(TopicArn=arn, AttributeName="DeliveryPolicy", AttributeValue=json.dumps(
                {"http": {"defaultHealthyRetryPolicy": policy.get("healthyRetryPolicy", {}),
                          "defaultThrottlePolicy": policy.get("throttlePolicy", {})}}))
        assert error_code(e) == "InvalidParameter", policy
    good = {"healthyRetryPolicy": {"numRetries": 10, "numNoDelayRetries": 1, "numMinDelayRetries": 2,
                                   "numMaxDelayRetries": 3, "minDelayTarget": 1, "maxDelayTarget": 30,
                                   "backoffFunction": "geometric"},
            "throttlePolicy": {"maxReceivesPerSecond": 3}}
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url, Attributes={"DeliveryPolicy": json.dumps(good)})


def test_throttle_policy_limits_deliveries_per_second(sns, endpoint):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url, Attributes={
        "DeliveryPolicy": json.dumps({"throttlePolicy": {"maxReceivesPerSecond": 2}})})
    confirm_via_subscribe_url(endpoint)
    first = len(endpoint.posts)
    for i in range(8):
        sns.publish(TopicArn=arn, Message=f"m{i}")
    assert wait_until(lambda: len(endpoint.of_type("Notification")) == 8, timeout_s=30)
    times = endpoint.times[first:]
    # 2 per second: 8 deliveries start over at least 3 s (unthrottled they all arrive at once),
    # and no half second holds more than 2.
    assert times[-1] - times[0] >= 2.5, times
    for i, t in enumerate(times):
        assert len([u for u in times[i:] if u < t + 0.5]) <= 2, times


def test_unsubscribe_confirmation_is_retried_and_restores_the_subscription(sns, endpoint):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url, Attributes={"DeliveryPolicy": FAST_RETRIES})
    confirm_via_subscribe_url(endpoint)
    [sub] = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    endpoint.statuses.append(500)
    sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    assert sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"] == []
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["SubscriptionsDeleted"] == "1"
    # Refused once, then retried by the delivery policy with the same message id.
    assert wait_until(lambda: len(endpoint.of_type("UnsubscribeConfirmation")) == 2)
    (h1, first), (h2, second) = endpoint.of_type("UnsubscribeConfirmation")
    assert h1["x-amz-sns-message-id"] == h2["x-amz-sns-message-id"] == second["MessageId"]
    assert second["SubscribeURL"].startswith("http") and second["Token"]
    sns.publish(TopicArn=arn, Message="while unsubscribed")
    # Visiting the SubscribeURL of the UnsubscribeConfirmation restores the subscription.
    r = requests.get(second["SubscribeURL"], timeout=10)
    assert r.status_code == 200, r.text
    assert sub["SubscriptionArn"] in r.text
    [restored] = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert restored["SubscriptionArn"] == sub["SubscriptionArn"]
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["SubscriptionsDeleted"] == "0"
    sns.publish(TopicArn=arn, Message="restored")
    assert wait_until(lambda: endpoint.of_type("Notification"))
    time.sleep(0.5)
    assert [n["Message"] for _, n in endpoint.of_type("Notification")] == ["restored"]
