//! The sparse offset and time index of one segment.
//!
//! Every `index_interval_bytes` of log (and always for the first frame of a segment) the
//! writer records where a frame starts and the largest timestamp seen so far in the segment.
//! Lookups binary-search this list in memory and then scan at most one interval of frames.
//! When a segment is closed the list is persisted as two files:
//!
//! ```text
//! NNNNNNNNNNNNNNNNNNNN.index      n × [relative_offset u32 LE][position u32 LE]       (8 bytes)
//! NNNNNNNNNNNNNNNNNNNN.timeindex  n × [max_timestamp_ms i64 LE][relative_offset u32 LE] (12 bytes)
//! ```
//!
//! `relative_offset` is the entry's offset minus the segment's base offset. The time index
//! stores the running maximum timestamp, so it is monotonic even when entry timestamps are not:
//! every entry up to and including an index point has a timestamp `<=` its `max_timestamp_ms`.
//! A closed segment's index always ends with its last frame (see [`SparseIndex::seal`]), which
//! lets recovery check an index file against the segment it describes.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// One index point: the frame that starts `relative_offset` sits at byte `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
    /// Largest timestamp of any entry from the segment start up to and including this one.
    pub max_timestamp_ms: i64,
}

const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

/// The in-memory sparse index of one segment.
#[derive(Debug)]
pub(crate) struct SparseIndex {
    entries: Vec<IndexEntry>,
    interval_bytes: u32,
    /// The point describing the most recent frame, whether or not it was indexed.
    last_frame: Option<IndexEntry>,
}

impl SparseIndex {
    pub(crate) fn new(interval_bytes: u32) -> SparseIndex {
        SparseIndex {
            entries: Vec::new(),
            interval_bytes,
            last_frame: None,
        }
    }

    /// An index loaded from files (or rebuilt); `entries` must end with the last frame.
    pub(crate) fn from_sealed(entries: Vec<IndexEntry>, interval_bytes: u32) -> SparseIndex {
        let last_frame = entries.last().copied();
        SparseIndex {
            entries,
            interval_bytes,
            last_frame,
        }
    }

    /// Records a frame appended at `position`; adds an index point if an interval has passed.
    pub(crate) fn observe(&mut self, relative_offset: u32, position: u32, timestamp_ms: i64) {
        let max_timestamp_ms = self.max_timestamp_ms().max(timestamp_ms);
        let point = IndexEntry {
            relative_offset,
            position,
            max_timestamp_ms,
        };
        debug_assert!(self
            .last_frame
            .is_none_or(|l| l.relative_offset < relative_offset && l.position < position));
        let due = match self.entries.last() {
            None => true,
            Some(last) => position - last.position >= self.interval_bytes,
        };
        if due {
            self.entries.push(point);
        }
        self.last_frame = Some(point);
    }

    /// Makes the last frame an index point, so the persisted index describes the whole segment.
    pub(crate) fn seal(&mut self) {
        if let Some(last) = self.last_frame {
            if self.entries.last() != Some(&last) {
                self.entries.push(last);
            }
        }
    }

    /// Largest timestamp in the segment (`i64::MIN` when empty).
    pub(crate) fn max_timestamp_ms(&self) -> i64 {
        self.last_frame.map_or(i64::MIN, |l| l.max_timestamp_ms)
    }

    /// The last index point at or before `relative_offset`, and the position of the next
    /// index point (the scan for `relative_offset` never needs to go past it).
    pub(crate) fn floor(&self, relative_offset: u32) -> Option<(IndexEntry, Option<u32>)> {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        let floor = *self.entries.get(i.checked_sub(1)?)?;
        Some((floor, self.entries.get(i).map(|e| e.position)))
    }

    /// Where to start scanning for the first entry with a timestamp `>= timestamp_ms`: every
    /// entry before the returned point is older. `None` if the whole segment is older.
    pub(crate) fn time_floor(&self, timestamp_ms: i64) -> Option<IndexEntry> {
        if self.max_timestamp_ms() < timestamp_ms {
            return None;
        }
        let i = self
            .entries
            .partition_point(|e| e.max_timestamp_ms < timestamp_ms);
        self.entries.get(i.saturating_sub(1)).copied()
    }

    /// The contents of the `.index` and `.timeindex` files.
    pub(crate) fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut offsets = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        let mut times = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for e in &self.entries {
            offsets.extend_from_slice(&e.relative_offset.to_le_bytes());
            offsets.extend_from_slice(&e.position.to_le_bytes());
            times.extend_from_slice(&e.max_timestamp_ms.to_le_bytes());
            times.extend_from_slice(&e.relative_offset.to_le_bytes());
        }
        (offsets, times)
    }

    /// Loads the index files of a closed segment of `segment_size` bytes. Returns `Ok(None)`
    /// if a file is missing or the pair is not a plausible index (the caller then rebuilds it
    /// from the segment); the last point must still be checked against the segment itself.
    pub(crate) fn load(
        index_path: &Path,
        timeindex_path: &Path,
        segment_size: u64,
        interval_bytes: u32,
    ) -> io::Result<Option<SparseIndex>> {
        let (Some(offsets), Some(times)) =
            (read_if_exists(index_path)?, read_if_exists(timeindex_path)?)
        else {
            return Ok(None);
        };
        if offsets.len() % OFFSET_ENTRY_BYTES != 0
            || times.len() % TIME_ENTRY_BYTES != 0
            || offsets.len() / OFFSET_ENTRY_BYTES != times.len() / TIME_ENTRY_BYTES
            || offsets.is_empty()
        {
            return Ok(None);
        }
        let mut entries: Vec<IndexEntry> = Vec::with_capacity(offsets.len() / OFFSET_ENTRY_BYTES);
        for (o, t) in offsets
            .chunks_exact(OFFSET_ENTRY_BYTES)
            .zip(times.chunks_exact(TIME_ENTRY_BYTES))
        {
            let le_u32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let mut ts = [0; 8];
            ts.copy_from_slice(&t[..8]);
            let entry = IndexEntry {
                relative_offset: le_u32(&o[..4]),
                position: le_u32(&o[4..8]),
                max_timestamp_ms: i64::from_le_bytes(ts),
            };
            let consistent = match entries.last() {
                None => entry.relative_offset == 0 && entry.position == 0,
                Some(prev) => {
                    prev.relative_offset < entry.relative_offset
                        && prev.position < entry.position
                        && prev.max_timestamp_ms <= entry.max_timestamp_ms
                }
            };
            if !consistent
                || le_u32(&t[8..12]) != entry.relative_offset
                || u64::from(entry.position) >= segment_size
            {
                return Ok(None);
            }
            entries.push(entry);
        }
        Ok(Some(SparseIndex::from_sealed(entries, interval_bytes)))
    }

    /// The last point, which for a sealed index describes the last frame.
    pub(crate) fn last(&self) -> Option<IndexEntry> {
        self.entries.last().copied()
    }
}

fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes both index files (as returned by [`SparseIndex::encode`]) and syncs them. The
/// caller syncs the directory.
pub(crate) fn write_files(
    index_path: &Path,
    timeindex_path: &Path,
    (offsets, times): &(Vec<u8>, Vec<u8>),
) -> io::Result<()> {
    write_synced(index_path, offsets)?;
    write_synced(timeindex_path, times)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(frames: &[(u32, u32, i64)], interval: u32) -> SparseIndex {
        let mut index = SparseIndex::new(interval);
        for &(rel, pos, ts) in frames {
            index.observe(rel, pos, ts);
        }
        index
    }

    #[test]
    fn indexes_first_frame_and_one_per_interval() {
        let frames: Vec<_> = (0..10).map(|i| (i, i * 40, i64::from(i))).collect();
        let index = index_of(&frames, 100);
        let positions: Vec<u32> = index.entries.iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![0, 120, 240, 360]);
        let (floor, next) = index.floor(4).unwrap();
        assert_eq!((floor.relative_offset, next), (3, Some(240)));
        let (floor, next) = index.floor(9).unwrap();
        assert_eq!((floor.relative_offset, next), (9, None));
    }

    #[test]
    fn time_floor_uses_running_maximum() {
        // Timestamps go 50, 10, 10, 60, 20, ...: the running maximum stays monotonic.
        let frames = [
            (0, 0, 50),
            (1, 10, 10),
            (2, 20, 10),
            (3, 30, 60),
            (4, 40, 20),
        ];
        let index = index_of(&frames, 1);
        assert_eq!(index.time_floor(40).unwrap().relative_offset, 0);
        assert_eq!(index.time_floor(55).unwrap().relative_offset, 2);
        assert_eq!(index.time_floor(61), None);
        assert_eq!(index.max_timestamp_ms(), 60);
    }

    #[test]
    fn persist_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, tp) = (dir.path().join("a.index"), dir.path().join("a.timeindex"));
        let mut index = index_of(&[(0, 0, 5), (2, 100, 3), (3, 300, 9)], 200);
        index.seal();
        write_files(&ip, &tp, &index.encode()).unwrap();
        let loaded = SparseIndex::load(&ip, &tp, 400, 200).unwrap().unwrap();
        assert_eq!(loaded.entries, index.entries);
        assert_eq!(loaded.last().unwrap().relative_offset, 3);
        // A position beyond the segment or a missing file makes the index untrustworthy.
        assert!(SparseIndex::load(&ip, &tp, 300, 200).unwrap().is_none());
        std::fs::remove_file(&tp).unwrap();
        assert!(SparseIndex::load(&ip, &tp, 400, 200).unwrap().is_none());
    }
}
