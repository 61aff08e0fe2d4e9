//! SQS actions: one file per family. Each action reads its input in the JSON 1.0 shape (the
//! query protocol is converted to it first), calls the broker, and returns its result in the
//! same shape.

pub mod access;
pub mod attributes;
pub mod dead_letters;
pub mod delete;
pub mod permissions;
pub mod queues;
pub mod receive;
pub mod send;
pub mod tags;
pub mod visibility;

use ferry_broker::Broker;
use serde_json::{Map, Value};

use super::errors::{AwsError, ErrorKind};
use super::AwsDoor;

/// Every SQS action the door serves.
pub const ACTIONS: [&str; 23] = [
    "CreateQueue",
    "DeleteQueue",
    "GetQueueUrl",
    "ListQueues",
    "PurgeQueue",
    "GetQueueAttributes",
    "SetQueueAttributes",
    "SendMessage",
    "SendMessageBatch",
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "ListDeadLetterSourceQueues",
    "StartMessageMoveTask",
    "ListMessageMoveTasks",
    "CancelMessageMoveTask",
    "TagQueue",
    "UntagQueue",
    "ListQueueTags",
    "AddPermission",
    "RemovePermission",
];

/// What an action needs besides its input.
pub struct Ctx {
    pub broker: Broker,
    pub door: AwsDoor,
    /// The request's Host header, for queue URLs.
    pub host: String,
    /// SenderId of sent messages: the access key, or the account id in open mode.
    pub sender_id: String,
    /// Who signed the request; None in open mode (no keys configured).
    pub principal: Option<crate::aws::policy::Principal>,
    /// The client's address (the `aws:SourceIp` of policy conditions).
    pub peer: std::net::IpAddr,
}

impl Ctx {
    pub fn account(&self) -> &str {
        &self.door.settings().account_id
    }

    pub fn queue_url(&self, name: &str) -> String {
        format!("http://{}/{}/{}", self.host, self.account(), name)
    }

    pub fn queue_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:sqs:{}:{}:{}",
            self.door.settings().region,
            self.account(),
            name
        )
    }

    /// The queue name in a queue URL (`http://host/<account>/<name>`, or `/<account>/<name>`).
    pub fn name_from_url(&self, url: &str) -> Result<String, AwsError> {
        let path = match url.find("://") {
            Some(i) => {
                let rest = &url[i + 3..];
                rest.find('/').map(|j| &rest[j..]).unwrap_or("")
            }
            None => url,
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            [account, name] if *account == self.account() => Ok(name.to_string()),
            [name] if !url.contains("://") => Ok(name.to_string()),
            _ => Err(AwsError::no_queue()),
        }
    }

    /// The queue name in an ARN of this region and account.
    pub fn name_from_arn(&self, arn: &str) -> Option<String> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", _, "sqs", region, account, name]
                if *region == self.door.settings().region
                    && *account == self.account()
                    && !name.is_empty() =>
            {
                Some(name.to_string())
            }
            _ => None,
        }
    }

    /// The queue an action's `QueueUrl` names (required).
    pub fn queue(&self, input: &Input) -> Result<String, AwsError> {
        let url = input.req_str("QueueUrl")?;
        self.name_from_url(url)
    }
}

/// Typed access to an action's input. Numbers are accepted as JSON numbers (JSON protocol) or
/// strings (query protocol).
pub struct Input<'a>(pub &'a Value);

impl<'a> Input<'a> {
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(Value::as_str)
    }

    pub fn req_str(&self, name: &str) -> Result<&'a str, AwsError> {
        self.str(name).ok_or_else(|| AwsError::missing(name))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, AwsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| AwsError::invalid_value(name, n, "must be an integer.")),
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| AwsError::invalid_value(name, s, "must be an integer.")),
            Some(other) => Err(AwsError::invalid_value(name, other, "must be an integer.")),
        }
    }

    /// An integer that must lie in `lo..=hi` when given.
    pub fn int_in(
        &self,
        name: &str,
        lo: i64,
        hi: i64,
        reason: &str,
    ) -> Result<Option<u32>, AwsError> {
        match self.int(name)? {
            None => Ok(None),
            Some(v) if v < lo || v > hi => Err(AwsError::invalid_value(name, v, reason)),
            Some(v) => Ok(Some(v as u32)),
        }
    }

    pub fn str_list(&self, name: &str) -> Result<Vec<String>, AwsError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        AwsError::invalid_parameter(format!("{name} must be a list of strings."))
                    })
                })
                .collect(),
            Some(_) => Err(AwsError::invalid_parameter(format!(
                "{name} must be a list of strings."
            ))),
        }
    }

    pub fn str_map(&self, name: &str) -> Result<Vec<(String, String)>, AwsError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Number(n) => Ok((k.clone(), n.to_string())),
                    Value::Bool(b) => Ok((k.clone(), b.to_string())),
                    _ => Err(AwsError::invalid_parameter(format!(
                        "{name}.{k} must be a string."
                    ))),
                })
                .collect(),
            Some(_) => Err(AwsError::invalid_parameter(format!(
                "{name} must be a map of strings."
            ))),
        }
    }

    pub fn entries(&self) -> Result<&'a Vec<Value>, AwsError> {
        match self.get("Entries") {
            Some(Value::Array(a)) => Ok(a),
            None => Err(AwsError::missing("Entries")),
            Some(_) => Err(AwsError::invalid_parameter("Entries must be a list.")),
        }
    }
}

/// An object result built from (name, value) pairs, skipping `None`s.
pub fn object(pairs: Vec<(&str, Option<Value>)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    }
    Value::Object(m)
}

/// Most entries in one batch request (SQS).
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Checks a batch's entry list: not empty, at most 10, valid and distinct ids. Returns the ids.
pub fn batch_ids(entries: &[Value], entry_name: &str) -> Result<Vec<String>, AwsError> {
    if entries.is_empty() {
        return Err(AwsError::new(
            ErrorKind::EmptyBatchRequest,
            format!("There should be at least one {entry_name} in the request."),
        ));
    }
    if entries.len() > MAX_BATCH_ENTRIES {
        return Err(AwsError::new(
            ErrorKind::TooManyEntriesInBatchRequest,
            format!(
                "Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut ids = Vec::with_capacity(entries.len());
    for e in entries {
        let id = e
            .get("Id")
            .and_then(Value::as_str)
            .ok_or_else(|| AwsError::missing(&format!("{entry_name}.Id")))?;
        let valid = !id.is_empty()
            && id.len() <= 80
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(AwsError::new(
                ErrorKind::InvalidBatchEntryId,
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if ids.iter().any(|i| i == id) {
            return Err(AwsError::new(
                ErrorKind::BatchEntryIdsNotDistinct,
                format!("Id {id} repeated."),
            ));
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// One `Failed` entry of a batch result (always a sender fault: the broker's own failures fail
/// the whole request).
pub fn failed_entry(id: &str, e: &AwsError) -> Value {
    serde_json::json!({"Id": id, "SenderFault": e.kind.fault() == "Sender", "Code": e.kind.code(), "Message": e.message})
}

/// A batch whose entries each get their own broker result (DeleteMessageBatch,
/// ChangeMessageVisibilityBatch): entries that fail to decode go to `Failed` without reaching
/// the broker, the rest go to `apply` in one call, and each answer lands in `Successful` or
/// `Failed` under its entry id. Only a whole-call broker error fails the request.
pub async fn per_entry_batch<T, F, Fut>(
    i: &Input<'_>,
    entry_name: &str,
    decode: impl Fn(&Input) -> Result<T, AwsError>,
    apply: F,
) -> Result<Value, AwsError>
where
    F: FnOnce(Vec<T>) -> Fut,
    Fut: std::future::Future<
        Output = Result<Vec<Result<(), ferry_broker::BrokerError>>, ferry_broker::BrokerError>,
    >,
{
    let entries = i.entries()?;
    let ids = batch_ids(entries, entry_name)?;
    let mut failed = Vec::new();
    let mut asked_ids = Vec::new();
    let mut asked = Vec::new();
    for (id, e) in ids.iter().zip(entries) {
        match decode(&Input(e)) {
            Ok(x) => {
                asked_ids.push(id);
                asked.push(x);
            }
            Err(err) => failed.push(failed_entry(id, &err)),
        }
    }
    let mut successful = Vec::new();
    if !asked.is_empty() {
        for (id, r) in asked_ids.into_iter().zip(apply(asked).await?) {
            match r {
                Ok(()) => successful.push(serde_json::json!({ "Id": id })),
                Err(e) => failed.push(failed_entry(id, &e.into())),
            }
        }
    }
    Ok(serde_json::json!({ "Successful": successful, "Failed": failed }))
}

pub async fn dispatch(ctx: &Ctx, action: &str, input: &Value) -> Result<Value, AwsError> {
    let i = Input(input);
    match action {
        "CreateQueue" => queues::create(ctx, &i),
        "DeleteQueue" => queues::delete(ctx, &i),
        "GetQueueUrl" => queues::get_url(ctx, &i),
        "ListQueues" => queues::list(ctx, &i),
        "PurgeQueue" => queues::purge(ctx, &i).await,
        "GetQueueAttributes" => attributes::get(ctx, &i),
        "SetQueueAttributes" => attributes::set(ctx, &i),
        "SendMessage" => send::send_one(ctx, &i).await,
        "SendMessageBatch" => send::send_batch(ctx, &i).await,
        "ReceiveMessage" => receive::receive(ctx, &i).await,
        "DeleteMessage" => delete::delete_one(ctx, &i).await,
        "DeleteMessageBatch" => delete::delete_batch(ctx, &i).await,
        "ChangeMessageVisibility" => visibility::change_one(ctx, &i).await,
        "ChangeMessageVisibilityBatch" => visibility::change_batch(ctx, &i).await,
        "ListDeadLetterSourceQueues" => dead_letters::list_sources(ctx, &i),
        "StartMessageMoveTask" => dead_letters::start_move(ctx, &i),
        "ListMessageMoveTasks" => dead_letters::list_moves(ctx, &i),
        "CancelMessageMoveTask" => dead_letters::cancel_move(ctx, &i),
        "TagQueue" => tags::tag(ctx, &i),
        "UntagQueue" => tags::untag(ctx, &i),
        "ListQueueTags" => tags::list(ctx, &i),
        "AddPermission" => permissions::add(ctx, &i),
        "RemovePermission" => permissions::remove(ctx, &i),
        other => Err(AwsError::new(
            ErrorKind::InvalidAction,
            format!("The action {other} is not valid for this endpoint."),
        )),
    }
}
