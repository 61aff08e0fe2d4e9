//! DeleteMessage and DeleteMessageBatch.

use serde_json::{json, Value};

use super::{batch_ids, failed_entry, Ctx, Input};
use crate::aws::errors::{AwsError, ErrorKind};

pub async fn delete_one(ctx: &Ctx, i: &Input<'_>) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let handle = i.req_str("ReceiptHandle")?;
    let mut r = ctx
        .broker
        .delete_messages(&name, vec![handle.to_string()])
        .await?;
    r.pop().ok_or_else(|| {
        AwsError::new(ErrorKind::InternalFailure, "the broker returned no result")
    })??;
    Ok(json!({}))
}

pub async fn delete_batch(ctx: &Ctx, i: &Input<'_>) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let entries = i.entries()?;
    let ids = batch_ids(entries, "DeleteMessageBatchRequestEntry")?;
    let mut failed = Vec::new();
    let mut asked = Vec::new();
    for (id, e) in ids.iter().zip(entries) {
        match Input(e).req_str("ReceiptHandle") {
            Ok(h) => asked.push((id.clone(), h.to_string())),
            Err(err) => failed.push(failed_entry(id, &err)),
        }
    }
    let mut successful = Vec::new();
    if !asked.is_empty() {
        let results = ctx
            .broker
            .delete_messages(&name, asked.iter().map(|(_, h)| h.clone()).collect())
            .await?;
        for ((id, _), r) in asked.iter().zip(results) {
            match r {
                Ok(()) => successful.push(json!({ "Id": id })),
                Err(e) => failed.push(failed_entry(id, &e.into())),
            }
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}
