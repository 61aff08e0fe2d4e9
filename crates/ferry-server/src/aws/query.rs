//! The query protocol: form parameters in, XML out.
//!
//! Requests are `Action=SendMessage&Version=2012-11-05&QueueUrl=...` with flattened lists and
//! maps (`SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.StringValue=...`). They are
//! turned into the same JSON shape the JSON 1.0 protocol carries, so each action is written
//! once:
//!
//! ```text
//! Attribute.1.Name=X&Attribute.1.Value=Y            → "Attributes": {"X": "Y"}
//! Tag.1.Key=k&Tag.1.Value=v                          → "Tags" (CreateQueue: "tags"): {"k": "v"}
//! MessageAttribute.1.Name=n&MessageAttribute.1.Value.DataType=String&...
//!                                                    → "MessageAttributes": {"n": {...}}
//! AttributeName.1=All                                → "AttributeNames": ["All"]
//! SendMessageBatchRequestEntry.1.Id=a                → "Entries": [{"Id": "a"}]
//! ```
//!
//! Responses are the JSON result written as XML in the 2012-11-05 namespace, with lists and
//! maps flattened the same way (`<Attribute><Name/><Value/></Attribute>`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub const XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// A node of the parameter tree: numbered segments become list positions.
#[derive(Default, Debug)]
struct Node {
    value: Option<String>,
    children: BTreeMap<String, Node>,
}

/// Converts form parameters (without `Action` and `Version`) to the JSON request shape.
pub fn params_to_json(action: &str, params: &[(String, String)]) -> Value {
    let mut root = Node::default();
    for (k, v) in params {
        if k == "Action" || k == "Version" || k.starts_with("X-Amz-") {
            continue;
        }
        let mut node = &mut root;
        for seg in k.split('.') {
            node = node.children.entry(seg.to_string()).or_default();
        }
        node.value = Some(v.clone());
    }
    let mut out = Map::new();
    for (k, child) in &root.children {
        let (name, value) = convert(action, k, child);
        out.insert(name, value);
    }
    Value::Object(out)
}

/// Items of a flattened list node (`1`, `2`, ... in numeric order).
fn items(node: &Node) -> Vec<&Node> {
    let mut v: Vec<(u64, &Node)> = node
        .children
        .iter()
        .filter_map(|(k, n)| k.parse::<u64>().ok().map(|i| (i, n)))
        .collect();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, n)| n).collect()
}

fn scalar(node: &Node) -> Value {
    match &node.value {
        Some(v) => Value::String(v.clone()),
        None => struct_of("", node),
    }
}

fn struct_of(action: &str, node: &Node) -> Value {
    let mut m = Map::new();
    for (k, child) in &node.children {
        let (name, value) = convert(action, k, child);
        m.insert(name, value);
    }
    Value::Object(m)
}

fn map_of(node: &Node, key: &str, value_is_struct: bool) -> Value {
    let mut m = Map::new();
    for item in items(node) {
        let Some(k) = item.children.get(key).and_then(|n| n.value.clone()) else {
            continue;
        };
        let v = match item.children.get("Value") {
            Some(v) if value_is_struct => struct_of("", v),
            Some(v) => scalar(v),
            None => Value::Null,
        };
        m.insert(k, v);
    }
    Value::Object(m)
}

fn list_of(node: &Node) -> Value {
    Value::Array(items(node).into_iter().map(scalar).collect())
}

/// One top-level or nested member: its JSON name and value.
fn convert(action: &str, key: &str, node: &Node) -> (String, Value) {
    match key {
        "Attribute" => ("Attributes".into(), map_of(node, "Name", false)),
        "Tag" if action == "CreateQueue" => ("tags".into(), map_of(node, "Key", false)),
        "Tag" => ("Tags".into(), map_of(node, "Key", false)),
        "MessageAttribute" => ("MessageAttributes".into(), map_of(node, "Name", true)),
        "MessageSystemAttribute" => ("MessageSystemAttributes".into(), map_of(node, "Name", true)),
        "AttributeName" => ("AttributeNames".into(), list_of(node)),
        "MessageAttributeName" => ("MessageAttributeNames".into(), list_of(node)),
        "MessageSystemAttributeName" => ("MessageSystemAttributeNames".into(), list_of(node)),
        "TagKey" => ("TagKeys".into(), list_of(node)),
        "AWSAccountId" => ("AWSAccountIds".into(), list_of(node)),
        "ActionName" => ("Actions".into(), list_of(node)),
        "StringListValue" => ("StringListValues".into(), list_of(node)),
        "BinaryListValue" => ("BinaryListValues".into(), list_of(node)),
        k if k.ends_with("BatchRequestEntry") => (
            "Entries".into(),
            Value::Array(
                items(node)
                    .into_iter()
                    .map(|n| struct_of(action, n))
                    .collect(),
            ),
        ),
        k => (k.to_string(), scalar(node)),
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// `<SendMessageResponse xmlns=...><SendMessageResult>...</SendMessageResult>
/// <ResponseMetadata><RequestId>...</RequestId></ResponseMetadata></SendMessageResponse>`
pub fn response_xml(action: &str, result: &Value, request_id: &str) -> String {
    let mut body = String::new();
    if let Value::Object(m) = result {
        for (k, v) in m {
            write_member(&mut body, action, k, v);
        }
    }
    let result_el = if body.is_empty() {
        String::new()
    } else {
        format!("<{action}Result>{body}</{action}Result>")
    };
    format!(
        "<?xml version=\"1.0\"?><{action}Response xmlns=\"{XMLNS}\">{result_el}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    )
}

pub fn error_xml(fault: &str, code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{fault}</Type><Code>{}</Code><Message>{}</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        escape(code),
        escape(message)
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

fn write_value(out: &mut String, action: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                write_member(out, action, k, v);
            }
        }
        other => out.push_str(&text(other)),
    }
}

/// Writes one member with the flattening rules of the SQS query model.
fn write_member(out: &mut String, action: &str, key: &str, v: &Value) {
    let list_item = match key {
        "QueueUrls" | "queueUrls" => Some("QueueUrl".to_string()),
        "Messages" => Some("Message".to_string()),
        "Successful" => Some(format!("{action}ResultEntry")),
        "Failed" => Some("BatchResultErrorEntry".to_string()),
        "Results" => Some("ListMessageMoveTasksResultEntry".to_string()),
        "StringListValues" => Some("StringListValue".to_string()),
        "BinaryListValues" => Some("BinaryListValue".to_string()),
        _ => None,
    };
    if let (Some(item), Value::Array(a)) = (&list_item, v) {
        for e in a {
            out.push_str(&format!("<{item}>"));
            write_value(out, action, e);
            out.push_str(&format!("</{item}>"));
        }
        return;
    }
    let map_item = match key {
        "Attributes" => Some(("Attribute", "Name")),
        "MessageAttributes" => Some(("MessageAttribute", "Name")),
        "Tags" => Some(("Tag", "Key")),
        _ => None,
    };
    if let (Some((item, name)), Value::Object(m)) = (map_item, v) {
        for (k, e) in m {
            out.push_str(&format!("<{item}><{name}>{}</{name}><Value>", escape(k)));
            write_value(out, action, e);
            out.push_str(&format!("</Value></{item}>"));
        }
        return;
    }
    out.push_str(&format!("<{key}>"));
    write_value(out, action, v);
    out.push_str(&format!("</{key}>"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flattened_params_become_json() {
        let v = params_to_json(
            "SendMessageBatch",
            &p(&[
                ("Action", "SendMessageBatch"),
                ("QueueUrl", "http://h/0/q"),
                ("SendMessageBatchRequestEntry.2.Id", "b"),
                ("SendMessageBatchRequestEntry.10.Id", "c"),
                ("SendMessageBatchRequestEntry.1.Id", "a"),
                ("SendMessageBatchRequestEntry.1.MessageBody", "x"),
                (
                    "SendMessageBatchRequestEntry.1.MessageAttribute.1.Name",
                    "n",
                ),
                (
                    "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType",
                    "String",
                ),
                (
                    "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue",
                    "v",
                ),
            ]),
        );
        assert_eq!(
            v,
            json!({"QueueUrl": "http://h/0/q", "Entries": [
                {"Id": "a", "MessageBody": "x", "MessageAttributes": {"n": {"DataType": "String", "StringValue": "v"}}},
                {"Id": "b"}, {"Id": "c"}]})
        );
        let v = params_to_json(
            "CreateQueue",
            &p(&[
                ("QueueName", "q"),
                ("Attribute.1.Name", "DelaySeconds"),
                ("Attribute.1.Value", "5"),
                ("Tag.1.Key", "k"),
                ("Tag.1.Value", "v"),
            ]),
        );
        assert_eq!(
            v,
            json!({"QueueName": "q", "Attributes": {"DelaySeconds": "5"}, "tags": {"k": "v"}})
        );
    }

    #[test]
    fn results_flatten_lists_and_maps() {
        let x = response_xml(
            "GetQueueAttributes",
            &json!({"Attributes": {"DelaySeconds": "0"}}),
            "r",
        );
        assert!(x.contains("<GetQueueAttributesResult><Attribute><Name>DelaySeconds</Name><Value>0</Value></Attribute></GetQueueAttributesResult>"), "{x}");
        let x = response_xml("ListQueues", &json!({"QueueUrls": ["a", "b&"]}), "r");
        assert!(
            x.contains("<QueueUrl>a</QueueUrl><QueueUrl>b&amp;</QueueUrl>"),
            "{x}"
        );
    }
}
