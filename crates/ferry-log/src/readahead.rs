//! Read-ahead for a reader going through a log's files in order (a consumer catching up on
//! data no longer in the tail cache): [`Log::prefetch`](crate::Log::prefetch) reads the next
//! run of entries into memory while the reader is busy with the last one, so its next read is
//! answered from memory instead of waiting for the disk.
//!
//! One run per log: a new prefetch replaces the old one. A read of an offset whose prefetch is
//! still loading waits for it rather than reading the same bytes a second time.

use parking_lot::{Condvar, Mutex};

use crate::entry::{within_budget, StoredEntry};

/// Longest run one prefetch reads.
pub(crate) const PREFETCH_MAX_BYTES: usize = 8 << 20;

#[derive(Default)]
pub(crate) struct Readahead {
    state: Mutex<State>,
    loaded: Condvar,
}

#[derive(Default)]
enum State {
    #[default]
    Empty,
    /// A prefetch from this offset is reading the files.
    Loading { from: u64 },
    /// Contiguous entries, the first containing the offset the prefetch started at.
    Loaded { entries: Vec<StoredEntry> },
}

/// What [`Readahead::read`] found.
pub(crate) enum Found {
    Entries(Vec<StoredEntry>),
    /// Not prefetched: read the files.
    Missing,
}

fn holds(entries: &[StoredEntry], offset: u64) -> bool {
    entries.first().is_some_and(|e| e.offset <= offset)
        && entries.last().is_some_and(|e| offset < e.next_offset())
}

impl Readahead {
    /// Claims a prefetch from `from`; `false` if one from there is loading or loaded already.
    pub(crate) fn begin(&self, from: u64) -> bool {
        let mut state = self.state.lock();
        match &*state {
            State::Loading { from: loading } if *loading == from => false,
            State::Loaded { entries } if holds(entries, from) => false,
            _ => {
                *state = State::Loading { from };
                true
            }
        }
    }

    /// Ends the prefetch claimed from `from` with what it read (nothing on an error).
    pub(crate) fn finish(&self, from: u64, entries: Option<Vec<StoredEntry>>) {
        let mut state = self.state.lock();
        if matches!(&*state, State::Loading { from: loading } if *loading == from) {
            *state = match entries {
                Some(entries) if !entries.is_empty() => State::Loaded { entries },
                _ => State::Empty,
            };
        }
        drop(state);
        self.loaded.notify_all();
    }

    /// The entries a range read from `from` returns (see [`within_budget`]), if prefetched.
    /// With `wait`, a prefetch loading from `from` is waited for; without, it is `Missing`.
    /// A run ends at the prefetched entries: the caller reads on from the files.
    pub(crate) fn read(&self, from: u64, max_bytes: usize, wait: bool) -> Found {
        let mut state = self.state.lock();
        loop {
            match &*state {
                State::Loaded { entries } if holds(entries, from) => {
                    let i = entries.partition_point(|e| e.next_offset() <= from);
                    return Found::Entries(within_budget(&entries[i..], max_bytes));
                }
                State::Loading { from: loading } if wait && *loading == from => {
                    self.loaded.wait(&mut state);
                }
                _ => return Found::Missing,
            }
        }
    }

    /// Whether `offset` is prefetched or being prefetched.
    pub(crate) fn covers(&self, offset: u64) -> bool {
        match &*self.state.lock() {
            State::Loading { from } => *from == offset,
            State::Loaded { entries } => holds(entries, offset),
            State::Empty => false,
        }
    }

    /// Drops what is prefetched (the log closed).
    pub(crate) fn clear(&self) {
        let mut state = self.state.lock();
        if matches!(&*state, State::Loaded { .. }) {
            *state = State::Empty;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entries(first: u64, count: u64) -> Vec<StoredEntry> {
        (first..first + count)
            .map(|offset| StoredEntry {
                offset,
                offset_count: 1,
                timestamp_ms: 0,
                payload: Bytes::from(vec![offset as u8; 100]),
            })
            .collect()
    }

    fn offsets(found: Found) -> Option<Vec<u64>> {
        match found {
            Found::Entries(e) => Some(e.iter().map(|e| e.offset).collect()),
            Found::Missing => None,
        }
    }

    #[test]
    fn a_prefetched_run_answers_reads_inside_it() {
        let ra = Readahead::default();
        assert!(offsets(ra.read(5, 1 << 20, true)).is_none());
        assert!(ra.begin(5));
        assert!(!ra.begin(5), "already loading from there");
        assert!(
            offsets(ra.read(5, 1 << 20, false)).is_none(),
            "not waited for"
        );
        ra.finish(5, Some(entries(5, 4)));
        assert!(!ra.begin(7), "already loaded");
        assert_eq!(offsets(ra.read(6, 1 << 20, true)), Some(vec![6, 7, 8]));
        assert_eq!(offsets(ra.read(6, 200, true)), Some(vec![6]));
        assert!(offsets(ra.read(9, 1 << 20, true)).is_none(), "past the run");
        assert!(ra.begin(9));
        ra.finish(9, None);
        assert!(
            offsets(ra.read(6, 1 << 20, true)).is_none(),
            "replaced by a failed prefetch"
        );
    }

    #[test]
    fn a_read_waits_for_the_prefetch_loading_its_offset() {
        let ra = std::sync::Arc::new(Readahead::default());
        assert!(ra.begin(0));
        let reader = {
            let ra = std::sync::Arc::clone(&ra);
            std::thread::spawn(move || offsets(ra.read(0, 1 << 20, true)))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        ra.finish(0, Some(entries(0, 2)));
        assert_eq!(reader.join().unwrap(), Some(vec![0, 1]));
    }
}
