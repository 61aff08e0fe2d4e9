//! DeleteMessage and DeleteMessageBatch.

use serde_json::{json, Value};

use super::{per_entry_batch, Ctx, Input};
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
    per_entry_batch(
        i,
        "DeleteMessageBatchRequestEntry",
        |e| Ok(e.req_str("ReceiptHandle")?.to_string()),
        |handles| ctx.broker.delete_messages(&name, handles),
    )
    .await
}
