//! Durable committed offsets of consumer groups.
//!
//! Every commit is one entry in a dedicated log (`<streams dir>/offsets/`), JSON-encoded:
//!
//! ```text
//! {"g":"group","t":"stream","p":0,"o":42,"m":"metadata"}   a commit
//! {"g":"group","del":true}                                  a deleted group
//! {"g":"group","t":"stream","p":0,"rm":true}                a deleted committed offset
//! {"t":"stream","drop":true}                                a deleted stream
//! ```
//!
//! A commit is acknowledged once its entry is durable. Opening replays the log into memory.
//! When the log holds many more entries than live offsets ([`REWRITE_RATIO`]) it is rewritten,
//! on open and periodically ([`OffsetStore::maybe_rewrite`]), by writing a fresh log beside it
//! and swapping directories, so the log does not grow without bound.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use ferry_log::{Entry, Log, LogConfig, LogError};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::StreamError;

/// Rewrite the offsets log on open when it holds this many times more entries than offsets.
pub const REWRITE_RATIO: u64 = 4;
/// ...and at least this many entries.
pub const REWRITE_MIN_ENTRIES: u64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub metadata: String,
    pub commit_time_ms: i64,
}

#[derive(Serialize, Deserialize, Default)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    g: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    del: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    drop: bool,
    /// One committed offset removed (a flag of its own: older readers ignore the record).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    rm: bool,
}

type Key = (String, String, u32);

struct State {
    offsets: BTreeMap<Key, CommittedOffset>,
    /// Entries in the current log (commits and tombstones), for the rewrite rule.
    entries: u64,
}

pub struct OffsetStore {
    root: PathBuf,
    dir: PathBuf,
    config: LogConfig,
    /// Replaced by a rewrite (under the state mutex, so no commit is appending meanwhile).
    log: RwLock<Log>,
    state: Mutex<State>,
    /// Bumped by every rewrite: a commit whose log was closed by a rewrite is durable in
    /// the rewritten log (the rewrite waited for it), so its `Closed` is a success.
    generation: AtomicU64,
}

impl OffsetStore {
    pub fn open(root: &Path, config: LogConfig) -> Result<OffsetStore, StreamError> {
        let dir = root.join("offsets");
        // A rewrite that crashed before the swap left `offsets.new`: the old log is intact.
        let _ = std::fs::remove_dir_all(root.join("offsets.new"));
        if !dir.exists() && root.join("offsets.old").exists() {
            std::fs::rename(root.join("offsets.old"), &dir)
                .map_err(|e| StreamError::io(&dir, e))?;
        }
        let _ = std::fs::remove_dir_all(root.join("offsets.old"));
        let log = Log::open(&dir, config.clone())?;
        let mut offsets = BTreeMap::new();
        let mut offset = log.start_offset();
        let end = log.next_offset();
        let mut entries_seen = 0u64;
        while offset < end {
            let entries = log.read(offset, 4 << 20)?;
            let Some(last) = entries.last() else { break };
            offset = last.next_offset();
            for entry in &entries {
                entries_seen += 1;
                let Ok(r) = serde_json::from_slice::<Record>(&entry.payload) else {
                    tracing::warn!(
                        offset = entry.offset,
                        "skipping an unreadable committed-offset record"
                    );
                    continue;
                };
                apply(&mut offsets, r, entry.timestamp_ms);
            }
        }
        let store = OffsetStore {
            root: root.to_path_buf(),
            dir,
            config,
            log: RwLock::new(log),
            state: Mutex::new(State {
                offsets,
                entries: entries_seen,
            }),
            generation: AtomicU64::new(0),
        };
        store.maybe_rewrite()?;
        Ok(store)
    }

    /// Rewrites the log with only the live offsets when it holds [`REWRITE_RATIO`] times more
    /// entries (and at least [`REWRITE_MIN_ENTRIES`]). Called on open and periodically.
    /// Commits wait meanwhile. Returns whether it rewrote.
    pub fn maybe_rewrite(&self) -> Result<bool, StreamError> {
        let mut state = self.state.lock();
        let live = state.offsets.len() as u64;
        if state.entries < REWRITE_MIN_ENTRIES || state.entries <= live * REWRITE_RATIO {
            return Ok(false);
        }
        let old = self.log.read().clone();
        old.wait_durable_blocking(old.next_offset())?;
        let new_dir = self.root.join("offsets.new");
        let _ = std::fs::remove_dir_all(&new_dir);
        {
            let log = Log::open(&new_dir, self.config.clone())?;
            let entries: Vec<Entry> = state
                .offsets
                .iter()
                .map(|((g, t, p), c)| encode_commit(g, t, *p, c))
                .collect();
            for chunk in entries.chunks(1000) {
                let appended = log.append(chunk)?;
                log.wait_durable_blocking(appended.next_offset)?;
            }
            log.close()?;
        }
        let mut current = self.log.write();
        old.close()?;
        let retired = self.root.join("offsets.old");
        std::fs::rename(&self.dir, &retired).map_err(|e| StreamError::io(&retired, e))?;
        std::fs::rename(&new_dir, &self.dir).map_err(|e| StreamError::io(&self.dir, e))?;
        if let Ok(d) = std::fs::File::open(&self.root) {
            let _ = d.sync_all();
        }
        let _ = std::fs::remove_dir_all(&retired);
        *current = Log::open(&self.dir, self.config.clone())?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::info!(
            offsets = live,
            entries_before = state.entries,
            "rewrote the committed offsets log"
        );
        state.entries = live;
        Ok(true)
    }

    /// Waits for `offset` on `log`, appended under `generation`.
    async fn wait(&self, log: Log, offset: u64, generation: u64) -> Result<(), StreamError> {
        match log.wait_durable(offset).await {
            Ok(()) => Ok(()),
            Err(LogError::Closed) if self.generation.load(Ordering::Acquire) != generation => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Commits offsets for one group; returns once they are durable.
    pub async fn commit(
        &self,
        group: &str,
        commits: &[(String, u32, i64, String)],
        now_ms: i64,
    ) -> Result<(), StreamError> {
        if commits.is_empty() {
            return Ok(());
        }
        let entries: Vec<Entry> = commits
            .iter()
            .map(|(t, p, o, m)| {
                encode_commit(
                    group,
                    t,
                    *p,
                    &CommittedOffset {
                        offset: *o,
                        metadata: m.clone(),
                        commit_time_ms: now_ms,
                    },
                )
            })
            .collect();
        let (log, appended, generation) = {
            let mut state = self.state.lock();
            let log = self.log.read().clone();
            let appended = log.append(&entries)?;
            state.entries += entries.len() as u64;
            for (t, p, o, m) in commits {
                state.offsets.insert(
                    (group.to_string(), t.clone(), *p),
                    CommittedOffset {
                        offset: *o,
                        metadata: m.clone(),
                        commit_time_ms: now_ms,
                    },
                );
            }
            (log, appended, self.generation.load(Ordering::Acquire))
        };
        self.wait(log, appended.next_offset, generation).await
    }

    pub fn get(&self, group: &str, stream: &str, partition: u32) -> Option<CommittedOffset> {
        self.state
            .lock()
            .offsets
            .get(&(group.to_string(), stream.to_string(), partition))
            .cloned()
    }

    /// Every committed offset of `group`: (stream, partition, offset).
    pub fn group_offsets(&self, group: &str) -> Vec<(String, u32, CommittedOffset)> {
        self.state
            .lock()
            .offsets
            .range((group.to_string(), String::new(), 0)..)
            .take_while(|((g, _, _), _)| g == group)
            .map(|((_, t, p), c)| (t.clone(), *p, c.clone()))
            .collect()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .state
            .lock()
            .offsets
            .keys()
            .map(|(g, _, _)| g.clone())
            .collect();
        out.dedup();
        out
    }

    pub async fn delete_group(&self, group: &str) -> Result<(), StreamError> {
        self.tombstone(Record {
            g: Some(group.to_string()),
            del: true,
            ..Default::default()
        })
        .await
    }

    /// Forgets the committed offsets of `group` for these (stream, partition)s; returns once
    /// that is durable.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Result<(), StreamError> {
        let records = partitions
            .iter()
            .map(|(t, p)| Record {
                g: Some(group.to_string()),
                t: Some(t.clone()),
                p: Some(*p),
                rm: true,
                ..Default::default()
            })
            .collect();
        self.tombstones(records).await
    }

    pub async fn drop_stream(&self, stream: &str) -> Result<(), StreamError> {
        self.tombstone(Record {
            t: Some(stream.to_string()),
            drop: true,
            ..Default::default()
        })
        .await
    }

    async fn tombstone(&self, r: Record) -> Result<(), StreamError> {
        self.tombstones(vec![r]).await
    }

    /// Appends `records` in one append and waits once for them to be durable.
    async fn tombstones(&self, records: Vec<Record>) -> Result<(), StreamError> {
        if records.is_empty() {
            return Ok(());
        }
        let entries = records
            .iter()
            .map(|r| serde_json::to_vec(r).map(|payload| Entry::new(0, payload)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StreamError::Storage(e.to_string()))?;
        let (log, appended, generation) = {
            let mut state = self.state.lock();
            let log = self.log.read().clone();
            let appended = log.append(&entries)?;
            state.entries += entries.len() as u64;
            for r in records {
                apply(&mut state.offsets, r, 0);
            }
            (log, appended, self.generation.load(Ordering::Acquire))
        };
        self.wait(log, appended.next_offset, generation).await
    }

    pub fn close(&self) -> Result<(), StreamError> {
        Ok(self.log.read().close()?)
    }
}

fn encode_commit(group: &str, stream: &str, partition: u32, c: &CommittedOffset) -> Entry {
    let r = Record {
        g: Some(group.to_string()),
        t: Some(stream.to_string()),
        p: Some(partition),
        o: Some(c.offset),
        m: if c.metadata.is_empty() {
            None
        } else {
            Some(c.metadata.clone())
        },
        ..Default::default()
    };
    // Serializing a struct of strings and integers cannot fail.
    Entry::new(c.commit_time_ms, serde_json::to_vec(&r).unwrap_or_default())
}

fn apply(offsets: &mut BTreeMap<Key, CommittedOffset>, r: Record, ts: i64) {
    if r.del {
        if let Some(g) = r.g {
            offsets.retain(|(group, _, _), _| *group != g);
        }
    } else if r.drop {
        if let Some(t) = r.t {
            offsets.retain(|(_, stream, _), _| *stream != t);
        }
    } else if r.rm {
        if let (Some(g), Some(t), Some(p)) = (r.g, r.t, r.p) {
            offsets.remove(&(g, t, p));
        }
    } else if let (Some(g), Some(t), Some(p), Some(o)) = (r.g, r.t, r.p, r.o) {
        offsets.insert(
            (g, t, p),
            CommittedOffset {
                offset: o,
                metadata: r.m.unwrap_or_default(),
                commit_time_ms: ts,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_survive_reopen_and_deletes_apply() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = OffsetStore::open(dir.path(), LogConfig::default()).unwrap();
            s.commit(
                "g1",
                &[
                    ("s".into(), 0, 5, "m".into()),
                    ("s".into(), 1, 7, String::new()),
                ],
                1,
            )
            .await
            .unwrap();
            s.commit("g1", &[("s".into(), 0, 9, String::new())], 2)
                .await
                .unwrap();
            s.commit("g2", &[("t".into(), 0, 3, String::new())], 3)
                .await
                .unwrap();
            s.commit("g3", &[("s".into(), 0, 1, String::new())], 3)
                .await
                .unwrap();
            s.delete_group("g2").await.unwrap();
            s.drop_stream("s").await.unwrap();
            s.commit(
                "g1",
                &[
                    ("s".into(), 0, 1, String::new()),
                    ("u".into(), 0, 4, String::new()),
                    ("u".into(), 1, 6, String::new()),
                ],
                4,
            )
            .await
            .unwrap();
            s.delete_offsets("g1", &[("u".into(), 0)]).await.unwrap();
            s.close().unwrap();
        }
        let s = OffsetStore::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(s.get("g1", "s", 0).unwrap().offset, 1);
        assert!(
            s.get("g1", "u", 0).is_none(),
            "deleted offsets stay deleted"
        );
        assert_eq!(s.get("g1", "u", 1).unwrap().offset, 6);
        assert!(s.get("g1", "s", 1).is_none());
        assert!(s.get("g2", "t", 0).is_none());
        assert!(s.get("g3", "s", 0).is_none());
        assert_eq!(s.groups(), vec!["g1".to_string()]);
    }

    #[tokio::test]
    async fn online_rewrite_keeps_offsets_and_later_commits() {
        let dir = tempfile::tempdir().unwrap();
        let fast = LogConfig {
            durability: ferry_log::Durability::Never,
            ..LogConfig::default()
        };
        let s = OffsetStore::open(dir.path(), fast.clone()).unwrap();
        for i in 0..(REWRITE_MIN_ENTRIES as i64 + 1) {
            s.commit("g", &[("s".into(), (i % 3) as u32, i, String::new())], i)
                .await
                .unwrap();
        }
        assert!(s.maybe_rewrite().unwrap());
        assert!(!s.maybe_rewrite().unwrap());
        s.commit("g", &[("s".into(), 0, 99_999, String::new())], 1)
            .await
            .unwrap();
        assert_eq!(s.get("g", "s", 0).unwrap().offset, 99_999);
        s.close().unwrap();
        drop(s);
        let s = OffsetStore::open(dir.path(), fast).unwrap();
        assert_eq!(s.get("g", "s", 0).unwrap().offset, 99_999);
        assert_eq!(
            s.get("g", "s", 1).unwrap().offset,
            REWRITE_MIN_ENTRIES as i64
        );
        assert_eq!(s.group_offsets("g").len(), 3);
    }

    #[tokio::test]
    async fn rewrite_keeps_live_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let fast = LogConfig {
            durability: ferry_log::Durability::Never,
            ..LogConfig::default()
        };
        {
            let s = OffsetStore::open(dir.path(), fast.clone()).unwrap();
            for i in 0..(REWRITE_MIN_ENTRIES as i64 + 10) {
                s.commit("g", &[("s".into(), 0, i, String::new())], i)
                    .await
                    .unwrap();
            }
            s.close().unwrap();
        }
        let s = OffsetStore::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(
            s.get("g", "s", 0).unwrap().offset,
            REWRITE_MIN_ENTRIES as i64 + 9
        );
        s.close().unwrap();
        let s = OffsetStore::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(
            s.get("g", "s", 0).unwrap().offset,
            REWRITE_MIN_ENTRIES as i64 + 9
        );
    }
}
