//! Retention by time and size. Both drop whole closed segments, oldest first; the active
//! segment is never dropped, so a partition keeps at least its newest segment.
//!
//! - time (`retention.ms >= 0`): segments whose every entry is older than `now - retention.ms`;
//! - size (`retention.bytes >= 0`): oldest segments while the partition exceeds the limit.
//!
//! Compacted streams (`cleanup.policy=compact`) are exempt from time and size retention.

use super::{CleanupPolicy, Partition, StreamConfig, StreamError};

/// Applies `config`'s retention to one partition; returns the new log start offset.
pub fn enforce(p: &Partition, config: &StreamConfig, now_ms: i64) -> Result<u64, StreamError> {
    if config.cleanup_policy == CleanupPolicy::Compact {
        return Ok(p.log_start_offset());
    }
    let hw = p.high_watermark();
    let mut cut = 0u64;
    if config.retention_ms >= 0 {
        let cutoff = now_ms.saturating_sub(config.retention_ms);
        // The first entry at or after the cutoff; everything before it is expired.
        cut = match p.first_entry_at_or_after(cutoff)? {
            Some(offset) => offset,
            None => hw,
        };
    }
    if config.retention_bytes >= 0 {
        let segments = p.segments();
        let mut total: u64 = segments.iter().map(|s| s.size_bytes).sum();
        for s in &segments[..segments.len().saturating_sub(1)] {
            if total <= config.retention_bytes as u64 {
                break;
            }
            total -= s.size_bytes;
            cut = cut.max(s.next_offset);
        }
    }
    if cut > p.log_start_offset() {
        p.truncate_before(cut)
    } else {
        Ok(p.log_start_offset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::batch::{encode_records, NewRecord};
    use crate::stream::TimestampType;
    use bytes::Bytes;
    use ferry_log::LogConfig;

    fn one(ts: i64) -> Bytes {
        encode_records(
            &[NewRecord {
                value: Some(Bytes::from(vec![7u8; 200])),
                timestamp_ms: Some(ts),
                ..Default::default()
            }],
            0,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn time_and_size_retention_drop_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogConfig {
            segment_bytes: 1024,
            ..LogConfig::default()
        };
        let p = Partition::open(dir.path(), 0, log).unwrap();
        for i in 0..40 {
            let a = p
                .append(one(i * 1000), TimestampType::CreateTime, 1 << 20, 0)
                .unwrap();
            p.wait_durable(a.durable_at).await.unwrap();
        }
        assert!(p.segments().len() > 5);
        let mut config = StreamConfig {
            retention_ms: 10_000,
            ..StreamConfig::default()
        };
        // now = 40 s: entries older than 30 s (offsets < 30) may go.
        let start = enforce(&p, &config, 40_000).unwrap();
        assert!(start > 0 && start <= 30, "start {start}");
        config.retention_ms = -1;
        config.retention_bytes = 2048;
        let start2 = enforce(&p, &config, 40_000).unwrap();
        assert!(start2 > start);
        let total: u64 = p.segments().iter().map(|s| s.size_bytes).sum();
        assert!(total <= 2048 + 1024, "total {total}");
        // Reads below the start are out of range, at the start they work.
        assert!(p.read(start2 - 1, 100).is_err());
        assert!(!p.read(start2, 100).unwrap().records.is_empty());
    }
}
