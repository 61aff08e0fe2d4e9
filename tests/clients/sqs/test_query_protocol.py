"""The query protocol (form-encoded requests, XML responses), as SDKs before the JSON switch
(botocore < 1.34.x) and hand-written clients speak it. Requests are SigV4-signed by botocore's
own signer and sent raw."""

import base64
import hashlib

from conftest import ACCOUNT, NS, signed_query, xml_text
from test_messages import md5_of_attributes


def create(ferry, name, **attrs):
    params = {"Action": "CreateQueue", "QueueName": name}
    for i, (k, v) in enumerate(attrs.items(), 1):
        params[f"Attribute.{i}.Name"] = k
        params[f"Attribute.{i}.Value"] = v
    r, x = signed_query(ferry, params)
    assert r.status_code == 200, r.text
    return xml_text(x, "sqs:CreateQueueResult/sqs:QueueUrl")


def test_queue_lifecycle_over_query(ferry):
    url = create(ferry, "qp", VisibilityTimeout="40")
    assert url == f"http://{ferry.doors['aws']}/{ACCOUNT}/qp"
    r, x = signed_query(ferry, {"Action": "GetQueueUrl", "QueueName": "qp"})
    assert r.headers["Content-Type"].startswith("text/xml")
    assert x.tag == "{http://queue.amazonaws.com/doc/2012-11-05/}GetQueueUrlResponse"
    assert xml_text(x, "sqs:GetQueueUrlResult/sqs:QueueUrl") == url
    assert xml_text(x, "sqs:ResponseMetadata/sqs:RequestId")
    r, x = signed_query(ferry, {"Action": "GetQueueAttributes", "QueueUrl": url, "AttributeName.1": "All"})
    attrs = {a.find("sqs:Name", NS).text: a.find("sqs:Value", NS).text for a in x.findall("sqs:GetQueueAttributesResult/sqs:Attribute", NS)}
    assert attrs["VisibilityTimeout"] == "40"
    assert attrs["QueueArn"].endswith(":qp")
    r, x = signed_query(ferry, {"Action": "SetQueueAttributes", "QueueUrl": url, "Attribute.1.Name": "DelaySeconds", "Attribute.1.Value": "3"})
    assert r.status_code == 200
    r, x = signed_query(ferry, {"Action": "TagQueue", "QueueUrl": url, "Tag.1.Key": "team", "Tag.1.Value": "blue"})
    assert r.status_code == 200
    r, x = signed_query(ferry, {"Action": "ListQueueTags", "QueueUrl": url})
    tags = {t.find("sqs:Key", NS).text: t.find("sqs:Value", NS).text for t in x.findall("sqs:ListQueueTagsResult/sqs:Tag", NS)}
    assert tags == {"team": "blue"}
    create(ferry, "qp2")
    r, x = signed_query(ferry, {"Action": "ListQueues", "QueueNamePrefix": "qp"})
    assert [e.text for e in x.findall("sqs:ListQueuesResult/sqs:QueueUrl", NS)] == [url, url + "2"]
    r, x = signed_query(ferry, {"Action": "DeleteQueue", "QueueUrl": url})
    assert r.status_code == 200
    assert x.tag.endswith("DeleteQueueResponse")


def test_messages_over_query(ferry):
    url = create(ferry, "qm")
    r, x = signed_query(
        ferry,
        {
            "Action": "SendMessage",
            "QueueUrl": url,
            "MessageBody": "hello <xml> & ünïcode",
            "MessageAttribute.1.Name": "k",
            "MessageAttribute.1.Value.DataType": "String",
            "MessageAttribute.1.Value.StringValue": "v",
            "MessageAttribute.2.Name": "b",
            "MessageAttribute.2.Value.DataType": "Binary",
            "MessageAttribute.2.Value.BinaryValue": base64.b64encode(b"\x01\x02").decode(),
        },
    )
    assert r.status_code == 200, r.text
    res = "sqs:SendMessageResult/"
    assert xml_text(x, res + "sqs:MD5OfMessageBody") == hashlib.md5("hello <xml> & ünïcode".encode()).hexdigest()
    expected = md5_of_attributes({"k": {"DataType": "String", "StringValue": "v"}, "b": {"DataType": "Binary", "BinaryValue": b"\x01\x02"}})
    assert xml_text(x, res + "sqs:MD5OfMessageAttributes") == expected
    message_id = xml_text(x, res + "sqs:MessageId")
    r, x = signed_query(
        ferry,
        {"Action": "ReceiveMessage", "QueueUrl": url, "AttributeName.1": "All", "MessageAttributeName.1": "All", "MaxNumberOfMessages": "5"},
    )
    msgs = x.findall("sqs:ReceiveMessageResult/sqs:Message", NS)
    assert len(msgs) == 1
    m = msgs[0]
    assert m.find("sqs:MessageId", NS).text == message_id
    assert m.find("sqs:Body", NS).text == "hello <xml> & ünïcode"
    attrs = {a.find("sqs:Name", NS).text: a.find("sqs:Value", NS).text for a in m.findall("sqs:Attribute", NS)}
    assert attrs["ApproximateReceiveCount"] == "1"
    mattrs = {a.find("sqs:Name", NS).text: a.find("sqs:Value", NS) for a in m.findall("sqs:MessageAttribute", NS)}
    assert mattrs["k"].find("sqs:StringValue", NS).text == "v"
    assert mattrs["k"].find("sqs:DataType", NS).text == "String"
    assert base64.b64decode(mattrs["b"].find("sqs:BinaryValue", NS).text) == b"\x01\x02"
    assert m.find("sqs:MD5OfMessageAttributes", NS).text == expected
    handle = m.find("sqs:ReceiptHandle", NS).text
    r, x = signed_query(ferry, {"Action": "ChangeMessageVisibility", "QueueUrl": url, "ReceiptHandle": handle, "VisibilityTimeout": "10"})
    assert r.status_code == 200, r.text
    r, x = signed_query(ferry, {"Action": "DeleteMessage", "QueueUrl": url, "ReceiptHandle": handle})
    assert r.status_code == 200, r.text


def test_batches_over_query(ferry):
    url = create(ferry, "qb")
    r, x = signed_query(
        ferry,
        {
            "Action": "SendMessageBatch",
            "QueueUrl": url,
            "SendMessageBatchRequestEntry.1.Id": "ok",
            "SendMessageBatchRequestEntry.1.MessageBody": "fine",
            "SendMessageBatchRequestEntry.2.Id": "bad",
            "SendMessageBatchRequestEntry.2.MessageBody": "x",
            "SendMessageBatchRequestEntry.2.DelaySeconds": "901",
        },
    )
    assert r.status_code == 200, r.text
    ok = x.findall("sqs:SendMessageBatchResult/sqs:SendMessageBatchResultEntry", NS)
    bad = x.findall("sqs:SendMessageBatchResult/sqs:BatchResultErrorEntry", NS)
    assert [e.find("sqs:Id", NS).text for e in ok] == ["ok"]
    assert [(e.find("sqs:Id", NS).text, e.find("sqs:Code", NS).text, e.find("sqs:SenderFault", NS).text) for e in bad] == [
        ("bad", "InvalidParameterValue", "true")
    ]
    r, x = signed_query(ferry, {"Action": "ReceiveMessage", "QueueUrl": url})
    handle = x.find("sqs:ReceiveMessageResult/sqs:Message/sqs:ReceiptHandle", NS).text
    r, x = signed_query(
        ferry,
        {
            "Action": "DeleteMessageBatch",
            "QueueUrl": url,
            "DeleteMessageBatchRequestEntry.1.Id": "a",
            "DeleteMessageBatchRequestEntry.1.ReceiptHandle": handle,
            "DeleteMessageBatchRequestEntry.2.Id": "b",
            "DeleteMessageBatchRequestEntry.2.ReceiptHandle": "garbage",
        },
    )
    assert [e.text for e in x.findall("sqs:DeleteMessageBatchResult/sqs:DeleteMessageBatchResultEntry/sqs:Id", NS)] == ["a"]
    assert xml_text(x, "sqs:DeleteMessageBatchResult/sqs:BatchResultErrorEntry/sqs:Code") == "ReceiptHandleIsInvalid"


def test_errors_over_query(ferry):
    r, x = signed_query(ferry, {"Action": "GetQueueUrl", "QueueName": "missing"})
    assert r.status_code == 400
    assert x.tag == "{http://queue.amazonaws.com/doc/2012-11-05/}ErrorResponse"
    assert xml_text(x, "sqs:Error/sqs:Type") == "Sender"
    assert xml_text(x, "sqs:Error/sqs:Code") == "AWS.SimpleQueueService.NonExistentQueue"
    assert xml_text(x, "sqs:Error/sqs:Message")
    assert xml_text(x, "sqs:RequestId")
    create(ferry, "dup", DelaySeconds="1")
    params = {"Action": "CreateQueue", "QueueName": "dup", "Attribute.1.Name": "DelaySeconds", "Attribute.1.Value": "2"}
    r, x = signed_query(ferry, params)
    assert (r.status_code, xml_text(x, "sqs:Error/sqs:Code")) == (400, "QueueAlreadyExists")
    r, x = signed_query(ferry, {"Action": "Explode"})
    assert (r.status_code, xml_text(x, "sqs:Error/sqs:Code")) == (400, "InvalidAction")
    url = create(ferry, "pq")
    signed_query(ferry, {"Action": "PurgeQueue", "QueueUrl": url})
    r, x = signed_query(ferry, {"Action": "PurgeQueue", "QueueUrl": url})
    assert (r.status_code, xml_text(x, "sqs:Error/sqs:Code")) == (403, "AWS.SimpleQueueService.PurgeQueueInProgress")


def test_get_request_with_query_string(ferry):
    create(ferry, "viaget")
    r, x = signed_query(ferry, {"Action": "ListQueues"}, method="GET")
    assert r.status_code == 200, r.text
    assert [e.text.rsplit("/", 1)[1] for e in x.findall("sqs:ListQueuesResult/sqs:QueueUrl", NS)] == ["viaget"]
