//! ChangeMessageVisibility and ChangeMessageVisibilityBatch.

use ferry_broker::VisibilityChange;
use serde_json::{json, Value};

use super::receive::MAX_VISIBILITY_TIMEOUT;
use super::{per_entry_batch, Ctx, Input};
use crate::aws::errors::{AwsError, ErrorKind};

fn decode(i: &Input) -> Result<VisibilityChange, AwsError> {
    let handle = i.req_str("ReceiptHandle")?;
    let timeout = i
        .int_in(
            "VisibilityTimeout",
            0,
            MAX_VISIBILITY_TIMEOUT,
            "VisibilityTimeout must be an integer between 0 and 43200.",
        )?
        .ok_or_else(|| AwsError::missing("VisibilityTimeout"))?;
    Ok(VisibilityChange {
        receipt_handle: handle.to_string(),
        visibility_timeout_seconds: timeout,
    })
}

pub async fn change_one(ctx: &Ctx, i: &Input<'_>) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let change = decode(i)?;
    let mut r = ctx.broker.change_visibility(&name, vec![change]).await?;
    r.pop().ok_or_else(|| {
        AwsError::new(ErrorKind::InternalFailure, "the broker returned no result")
    })??;
    Ok(json!({}))
}

pub async fn change_batch(ctx: &Ctx, i: &Input<'_>) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    per_entry_batch(
        i,
        "ChangeMessageVisibilityBatchRequestEntry",
        decode,
        |changes| ctx.broker.change_visibility(&name, changes),
    )
    .await
}
