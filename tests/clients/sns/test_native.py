"""The native /v1/topics API (requests against the HTTP door) and topic metrics on /metrics."""

import json

import requests

from snslib import drain, make_client


def test_native_topics_api_and_metrics(ferry):
    base = ferry.http_url + "/v1"
    sqs = make_client(ferry, "sqs")
    for q in ("n-all", "n-red", "n-dlq"):
        assert requests.post(base + "/queues", json={"name": q}, timeout=10).status_code in (200, 201)
    r = requests.post(base + "/topics", json={"name": "native"}, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["arn"].endswith(":native")
    assert requests.get(base + "/topics", timeout=10).json()["topics"] == ["native"]
    all_sub = requests.post(base + "/topics/native/subscriptions", json={"queue": "n-all", "raw_message_delivery": True}, timeout=10)
    assert all_sub.status_code == 201, all_sub.text
    red = requests.post(base + "/topics/native/subscriptions", json={
        "queue": "n-red", "filter_policy": {"color": ["red"]}, "dead_letter_queue": "n-dlq"}, timeout=10)
    assert red.status_code == 201, red.text
    assert red.json()["filter_policy"] == {"color": ["red"]}
    bad = requests.post(base + "/topics/native/subscriptions", json={"queue": "n-red", "filter_policy": {"a": "b"}}, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "InvalidParameter"
    assert "FilterPolicy" in bad.json()["error"]["message"]
    subs = requests.get(base + "/topics/native/subscriptions", timeout=10).json()["subscriptions"]
    assert sorted(s["queue"] for s in subs) == ["n-all", "n-red"]
    for color in ("red", "blue"):
        p = requests.post(base + "/topics/native/publish", json={
            "message": f"{color} thing", "attributes": {"color": {"type": "String", "value": color}}}, timeout=10)
        assert p.status_code == 200, p.text
        assert p.json()["message_id"]
    url = sqs.get_queue_url(QueueName="n-all")["QueueUrl"]
    assert sorted(m["Body"] for m in drain(sqs, url, expect=2)) == ["blue thing", "red thing"]
    url = sqs.get_queue_url(QueueName="n-red")["QueueUrl"]
    assert [json.loads(m["Body"])["Message"] for m in drain(sqs, url, expect=1)] == ["red thing"]

    topic = requests.get(base + "/topics/native", timeout=10).json()
    assert topic["published"] == 2
    assert topic["subscriptions_confirmed"] == 2
    assert sum(s["filtered_out"] for s in topic["subscriptions"]) == 1
    assert sum(s["delivered"] for s in topic["subscriptions"]) == 3

    metrics = requests.get(ferry.http_url + "/metrics", timeout=10).text
    assert 'ferry_topic_messages_published_total{topic="native"} 2' in metrics
    assert "ferry_subscription_filtered_out_total" in metrics
    assert "ferry_subscription_delivered_total" in metrics

    missing = requests.get(base + "/topics/nope", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "TopicNotFound"
    sub_id = red.json()["id"]
    assert requests.delete(f"{base}/topics/native/subscriptions/{sub_id}", timeout=10).status_code == 204
    assert requests.delete(f"{base}/topics/native/subscriptions/{sub_id}", timeout=10).status_code == 404
    assert requests.delete(base + "/topics/native", timeout=10).status_code == 204
    assert requests.get(base + "/topics", timeout=10).json()["topics"] == []
