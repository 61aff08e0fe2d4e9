"""Topic lifecycle, attributes, tags, permissions and errors (boto3, query/XML protocol)."""

import json

import botocore.exceptions
import pytest

from snslib import ACCOUNT, REGION, error_code, make_queue, status, unique


def test_create_list_get_delete(sns):
    name = unique("t")
    arn = sns.create_topic(Name=name)["TopicArn"]
    assert arn == f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
    # Idempotent.
    assert sns.create_topic(Name=name)["TopicArn"] == arn
    assert arn in [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["TopicArn"] == arn
    assert attrs["Owner"] == ACCOUNT
    assert attrs["SubscriptionsConfirmed"] == "0"
    assert json.loads(attrs["Policy"])["Statement"]
    assert "EffectiveDeliveryPolicy" in attrs
    sns.delete_topic(TopicArn=arn)
    assert arn not in [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.get_topic_attributes(TopicArn=arn)
    assert error_code(e) == "NotFound"
    assert status(e) == 404


def test_list_topics_pages(sns):
    arns = {sns.create_topic(Name=f"page-{i:03}")["TopicArn"] for i in range(120)}
    seen, token = set(), None
    while True:
        r = sns.list_topics(**({"NextToken": token} if token else {}))
        seen |= {t["TopicArn"] for t in r["Topics"]}
        token = r.get("NextToken")
        if not token:
            break
    assert arns <= seen


def test_set_topic_attributes(sns):
    arn = sns.create_topic(Name=unique("t"), Attributes={"DisplayName": "first"})["TopicArn"]
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="second")
    policy = json.dumps({"http": {"defaultHealthyRetryPolicy": {"numRetries": 1, "minDelayTarget": 1, "maxDelayTarget": 1}}})
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DeliveryPolicy", AttributeValue=policy)
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["DisplayName"] == "second"
    assert json.loads(attrs["DeliveryPolicy"]) == json.loads(policy)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.set_topic_attributes(TopicArn=arn, AttributeName="NoSuchThing", AttributeValue="x")
    assert error_code(e) == "InvalidParameter"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.set_topic_attributes(TopicArn=arn, AttributeName="FifoTopic", AttributeValue="true")
    assert error_code(e) == "InvalidParameter"


def test_create_with_different_attributes_fails(sns):
    name = unique("t")
    sns.create_topic(Name=name, Attributes={"DisplayName": "a"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.create_topic(Name=name, Attributes={"DisplayName": "b"})
    assert error_code(e) == "InvalidParameter"


def test_invalid_names(sns):
    for bad in ["has space", "x" * 257, ""]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sns.create_topic(Name=bad)
        assert error_code(e) == "InvalidParameter"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.create_topic(Name="plain.fifo")
    assert error_code(e) == "InvalidParameter"
    arn = sns.create_topic(Name="ok.fifo", Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"})["TopicArn"]
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["FifoTopic"] == "true"
    assert attrs["ContentBasedDeduplication"] == "true"


def test_tags(sns):
    arn = sns.create_topic(Name=unique("t"), Tags=[{"Key": "team", "Value": "a"}])["TopicArn"]
    sns.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "prod"}])
    tags = {t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=arn)["Tags"]}
    assert tags == {"team": "a", "env": "prod"}
    sns.untag_resource(ResourceArn=arn, TagKeys=["team"])
    tags = {t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=arn)["Tags"]}
    assert tags == {"env": "prod"}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.list_tags_for_resource(ResourceArn=arn + "-missing")
    assert error_code(e) == "ResourceNotFound"


def test_permissions(sns):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    sns.add_permission(TopicArn=arn, Label="l1", AWSAccountId=["111122223333"], ActionName=["Publish"])
    policy = json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"])
    assert any(s.get("Sid") == "l1" for s in policy["Statement"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.add_permission(TopicArn=arn, Label="l1", AWSAccountId=["111122223333"], ActionName=["Publish"])
    assert error_code(e) == "InvalidParameter"
    for accounts, actions in ((["alice"], ["Publish"]), (["111122223333"], ["Explode"])):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sns.add_permission(TopicArn=arn, Label="l2", AWSAccountId=accounts, ActionName=actions)
        assert error_code(e) == "InvalidParameter"
    policy = json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"])
    assert not any(s.get("Sid") == "l2" for s in policy["Statement"])
    sns.remove_permission(TopicArn=arn, Label="l1")
    policy = json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"])
    assert not any(s.get("Sid") == "l1" for s in policy["Statement"])


def test_subscription_lifecycle(sns, sqs):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    _, qarn = make_queue(sqs)
    sub = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, ReturnSubscriptionArn=True)["SubscriptionArn"]
    assert sub.startswith(arn + ":")
    # Subscribing again returns the same subscription.
    assert sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn)["SubscriptionArn"] == sub
    subs = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert [(s["SubscriptionArn"], s["Protocol"], s["Endpoint"]) for s in subs] == [(sub, "sqs", qarn)]
    assert sub in [s["SubscriptionArn"] for s in sns.list_subscriptions()["Subscriptions"]]
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert attrs["TopicArn"] == arn
    assert attrs["PendingConfirmation"] == "false"
    assert attrs["RawMessageDelivery"] == "false"
    sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="RawMessageDelivery", AttributeValue="true")
    sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="FilterPolicy", AttributeValue='{"a": ["b"]}')
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert attrs["RawMessageDelivery"] == "true"
    assert json.loads(attrs["FilterPolicy"]) == {"a": ["b"]}
    assert attrs["FilterPolicyScope"] == "MessageAttributes"
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["SubscriptionsConfirmed"] == "1"
    sns.unsubscribe(SubscriptionArn=sub)
    assert sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.get_subscription_attributes(SubscriptionArn=sub)
    assert error_code(e) == "NotFound"


def test_invalid_filter_policy_is_rejected_with_reason(sns, sqs):
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    _, qarn = make_queue(sqs)
    cases = [
        ({"a": "not-a-list"}, "must be an object or an array"),
        ({"k1": ["x"], "k2": ["x"], "k3": ["x"], "k4": ["x"], "k5": ["x"], "k6": ["x"]}, "5 keys"),
        ({"a": list(range(13)), "b": list(range(13))}, "too complex"),
        ({"a": [{"numeric": [">", "ten"]}]}, "numeric"),
        ({"a": [{"nope": 1}]}, "Unrecognized match type"),
        ({"a": {"nested": ["x"]}}, "nested"),
    ]
    for policy, reason in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"FilterPolicy": json.dumps(policy)})
        assert error_code(e) == "InvalidParameter"
        msg = e.value.response["Error"]["Message"]
        assert msg.startswith("Invalid parameter: FilterPolicy:"), msg
        assert reason in msg, msg


def test_errors_and_unsupported(sns):
    missing = f"arn:aws:sns:{REGION}:{ACCOUNT}:nope"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish(TopicArn=missing, Message="x")
    assert error_code(e) == "NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.subscribe(TopicArn=missing, Protocol="sqs", Endpoint="arn:aws:sqs:us-east-1:000000000000:q")
    assert error_code(e) == "NotFound"
    arn = sns.create_topic(Name=unique("t"))["TopicArn"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.subscribe(TopicArn=arn, Protocol="email", Endpoint="a@example.com")
    assert error_code(e) == "InvalidParameter"
    assert "not supported" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.publish(PhoneNumber="+15555550100", Message="x")
    assert "not supported" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.create_platform_application(Name="p", Platform="GCM", Attributes={})
    assert error_code(e) == "InvalidAction"
    assert "not supported" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sns.get_sms_attributes()
    assert "not supported" in e.value.response["Error"]["Message"]
