//! One segment: an append-only file of frames, named by its base offset, with its sparse
//! index in memory.
//!
//! Only the writer thread appends to a segment; it publishes what it wrote by updating
//! [`SegmentMeta`] after the `write` returned. Readers take the meta lock just long enough to
//! copy an index point and the written size, then `pread` without any lock held, so reads
//! never wait for the disk writes or syncs of the writer.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::aligned::{AlignedBuf, DIRECT_IO_ALIGN};
use crate::cursor::FrameCursor;
use crate::entry::StoredEntry;
use crate::error::LogError;
use crate::frame::HEADER_BYTES;
use crate::index::{self, SparseIndex};

/// Upper bound on one read-ahead `pread` when scanning for a single entry or a timestamp.
const LOOKUP_READAHEAD_MAX: usize = 64 << 10;
/// Upper bound on one read-ahead `pread` for range reads.
const RANGE_READAHEAD_MAX: usize = 1 << 20;
/// A batch read scans on from one wanted entry to the next while the next lies at most this
/// far beyond the scan (by the index); further away it seeks afresh.
const BATCH_SCAN_GAP: u64 = 64 << 10;

/// Public description of a segment, for operators and retention policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: u64,
    /// One past the last offset written to this segment.
    pub next_offset: u64,
    pub size_bytes: u64,
    pub path: PathBuf,
}

/// What the writer has finished writing to a segment.
#[derive(Debug)]
pub(crate) struct SegmentMeta {
    /// Bytes written; every frame ends at or before this position.
    pub size: u64,
    /// One past the last offset written.
    pub next_offset: u64,
    pub index: SparseIndex,
}

#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: u64,
    path: PathBuf,
    file: File,
    /// With `LogConfig::direct_io` on a file system that allows it: the same file opened with
    /// `O_DIRECT`, through which every write and read of the frames goes (see `writer.rs`).
    direct: Option<File>,
    meta: RwLock<SegmentMeta>,
    /// Length of the file: the written frames plus prepared space after them, blocks already
    /// written that appends overwrite: zeros (see `LogConfig::preallocate_bytes`), or the old
    /// bytes of a recycled segment's file. Only the active segment has prepared space.
    allocated: AtomicU64,
}

/// Zero-fill writes at most this much per `pwrite`.
const ZERO_FILL_CHUNK: usize = 1 << 20;

/// The zero-filled file a busy log prepares for its next segment (see `syncer.rs`). Its name
/// is not a segment's, so recovery never takes it for one; it removes it instead.
pub(crate) const SPARE_FILE: &str = "spare-segment";
/// Segment files retention removed wait at `recycled-segment.N` to become the next spare
/// (see [`Segment::recycle_file`]), at most this many.
pub(crate) const MAX_RECYCLED: usize = 2;

fn recycled_path(dir: &Path, slot: usize) -> PathBuf {
    dir.join(format!("recycled-segment.{slot}"))
}

/// Writes zeros to `[start, end)` of `direct`, a file opened with `O_DIRECT`, a chunk at a
/// time (both ends aligned to [`DIRECT_IO_ALIGN`]).
fn write_zeros(direct: &File, start: u64, end: u64) -> std::io::Result<()> {
    let zeros = AlignedBuf::zeroed(ZERO_FILL_CHUNK);
    let mut position = start;
    while position < end {
        let len = usize::try_from(end - position)
            .unwrap_or(usize::MAX)
            .min(ZERO_FILL_CHUNK);
        direct.write_all_at(&zeros.as_slice()[..len], position)?;
        position += len as u64;
    }
    Ok(())
}

/// Path of a segment's file with extension `log`, `index` or `timeindex`.
pub(crate) fn segment_path(dir: &Path, base_offset: u64, extension: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{extension}"))
}

/// Whether a range read filled its byte budget or ran out of entries in this segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadProgress {
    Full,
    Exhausted { next_offset: u64 },
}

impl Segment {
    /// Creates the empty file of a new segment. The caller syncs the directory.
    pub(crate) fn create(
        dir: &Path,
        base_offset: u64,
        index_interval_bytes: u32,
    ) -> Result<Segment, LogError> {
        let path = segment_path(dir, base_offset, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(LogError::io(&path))?;
        Ok(Segment::empty(
            base_offset,
            path,
            file,
            index_interval_bytes,
        ))
    }

    /// A segment holding no frames yet, starting at `base_offset`, in `file` at `path`.
    fn empty(base_offset: u64, path: PathBuf, file: File, index_interval_bytes: u32) -> Segment {
        let meta = SegmentMeta {
            size: 0,
            next_offset: base_offset,
            index: SparseIndex::new(index_interval_bytes),
        };
        Segment::new(base_offset, path, file, meta)
    }

    /// Writes a zero-filled file of `len` bytes (a multiple of [`DIRECT_IO_ALIGN`]) at
    /// [`SPARE_FILE`] in `dir` with direct I/O and syncs it, replacing any earlier one. The
    /// next roll renames it into place as the new segment (see [`Segment::adopt_spare`]), so
    /// the blocks of the whole segment are allocated, written and recorded before its first
    /// append, and no `fdatasync` of the active segment has to commit an inode update. The
    /// caller makes sure nothing else touches the file meanwhile.
    pub(crate) fn prepare_spare(dir: &Path, len: u64) -> std::io::Result<()> {
        let path = dir.join(SPARE_FILE);
        let prepared = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .and_then(|direct| {
                write_zeros(&direct, 0, len)?;
                direct.sync_all()
            });
        if prepared.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        prepared
    }

    /// Renames the spare file (see [`Segment::prepare_spare`]) into place as the empty segment
    /// starting at `base_offset`, all of it prepared space (zeros, or a recycled file's old
    /// bytes, see [`Segment::spare_from_recycled`]). The caller syncs the directory.
    pub(crate) fn adopt_spare(
        dir: &Path,
        base_offset: u64,
        index_interval_bytes: u32,
    ) -> Result<Segment, LogError> {
        let path = segment_path(dir, base_offset, "log");
        let spare = dir.join(SPARE_FILE);
        std::fs::rename(&spare, &path).map_err(LogError::io(&spare))?;
        let file = Segment::open_file(&path)?;
        let len = file.metadata().map_err(LogError::io(&path))?.len();
        let segment = Segment::empty(base_offset, path, file, index_interval_bytes);
        segment.set_allocated(len);
        Ok(segment)
    }

    /// Makes the file of a recycled segment (see [`Segment::recycle_file`]) the spare file:
    /// its blocks are allocated and written, so the next segment can overwrite them without
    /// zero-filling them first. What is left of its old frames is told apart by recovery (see
    /// the crate docs).
    pub(crate) fn spare_from_recycled(dir: &Path, slot: usize) -> std::io::Result<()> {
        std::fs::rename(recycled_path(dir, slot), dir.join(SPARE_FILE))
    }

    /// Removes `dir`'s spare file and recycled segment file, if there are any.
    pub(crate) fn remove_spare(dir: &Path) -> Result<(), LogError> {
        let recycled = (0..MAX_RECYCLED).map(|slot| recycled_path(dir, slot));
        for path in std::iter::once(dir.join(SPARE_FILE)).chain(recycled) {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(LogError::io(&path)(e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Opens an existing segment file for reading and writing.
    pub(crate) fn open_file(path: &Path) -> Result<File, LogError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(LogError::io(path))
    }

    pub(crate) fn new(base_offset: u64, path: PathBuf, file: File, meta: SegmentMeta) -> Segment {
        debug_assert!(meta.next_offset >= base_offset);
        let allocated = AtomicU64::new(meta.size);
        Segment {
            base_offset,
            path,
            file,
            direct: None,
            meta: RwLock::new(meta),
            allocated,
        }
    }

    /// Opens the file for direct I/O too when `on`, if the file system allows it (tmpfs, for
    /// one, does not: the segment then keeps using the page cache). One aligned direct I/O is
    /// tried first (a read of the first page, or for an empty file a write of a zero page that
    /// is cut off again), so a file system that accepts `O_DIRECT` but needs a larger alignment
    /// also falls back, rather than failing the first write.
    pub(crate) fn with_direct_io(mut self, on: bool) -> Segment {
        if on {
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&self.path);
            match opened.and_then(|f| self.probe_direct_io(&f).map(|()| f)) {
                Ok(f) => self.direct = Some(f),
                Err(error) => {
                    tracing::warn!(path = %self.path.display(), %error, "direct I/O is not available here; the log goes through the page cache")
                }
            }
        }
        self
    }

    fn probe_direct_io(&self, direct: &File) -> std::io::Result<()> {
        let align = DIRECT_IO_ALIGN as usize;
        let mut page = AlignedBuf::zeroed(align);
        let len = self.file.metadata()?.len();
        if len == 0 {
            direct.write_all_at(page.as_slice(), 0)?;
            self.file.set_len(0)
        } else {
            let need = usize::try_from(len).unwrap_or(align).min(align);
            crate::aligned::read_direct(direct, page.as_mut_slice(), 0, need)
        }
    }

    /// Records that the file now reaches `end` (a direct write pads its last page with zeros),
    /// so the padding is cut off when the segment closes.
    pub(crate) fn note_allocated(&self, end: u64) {
        self.allocated.fetch_max(end, Ordering::AcqRel);
    }

    /// The file opened for direct I/O, if this segment uses it.
    pub(crate) fn direct_file(&self) -> Option<&File> {
        self.direct.as_ref()
    }

    /// A cursor over this segment's frames from `pos`, stopping at `end`.
    fn cursor(&self, pos: u64, end: u64, readahead: usize) -> FrameCursor<'_> {
        match &self.direct {
            Some(f) => FrameCursor::new(f, pos, end, readahead, true),
            None => FrameCursor::new(&self.file, pos, end, readahead, false),
        }
    }

    /// Length of the file, prepared space included.
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Acquire)
    }

    /// How many zero bytes to write after data ending at `end` so the write ends on a page
    /// boundary: the rest of the last page, if that page lies in prepared space, else 0. The
    /// file then holds the same bytes (zeros were there already) or zeros over a recycled
    /// file's old bytes, which nothing reads; either way the page is whole
    /// in the page cache, so the next write, which starts inside it, never reads it from the
    /// disk. Zero-fills start at page boundaries beyond the writer's reservation, so the
    /// padding never reaches into one.
    pub(crate) fn page_padding(&self, end: u64) -> usize {
        let page_end = end.next_multiple_of(DIRECT_IO_ALIGN);
        if page_end <= self.allocated() {
            (page_end - end) as usize
        } else {
            0
        }
    }

    pub(crate) fn set_allocated(&self, len: u64) {
        self.allocated.store(len, Ordering::Release);
    }

    /// Writes zeros to `[start, end)` (aligned to [`DIRECT_IO_ALIGN`]) with direct I/O, so
    /// the zeros go to the disk without passing through (and later being flushed from) the
    /// page cache, and syncs them. The zeros are not read back: the writer writes whole pages
    /// in zero-filled space (see [`Segment::page_padding`]), so it never reads a page from
    /// the disk to change part of it. The caller guarantees the writer does not write into
    /// the range meanwhile.
    pub(crate) fn zero_fill(&self, start: u64, end: u64) -> std::io::Result<()> {
        debug_assert!(
            start.is_multiple_of(DIRECT_IO_ALIGN)
                && end.is_multiple_of(DIRECT_IO_ALIGN)
                && start < end
        );
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&self.path)?;
        write_zeros(&direct, start, end)?;
        direct.sync_data()?;
        self.allocated.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Cuts prepared space off the end of the file, so it ends at its last frame (closed
    /// segments must). The caller syncs.
    pub(crate) fn trim_allocation(&self) -> Result<(), LogError> {
        let size = self.size();
        if self.allocated() > size {
            self.file.set_len(size).map_err(LogError::io(&self.path))?;
            self.set_allocated(size);
        }
        Ok(())
    }

    pub(crate) fn base_offset(&self) -> u64 {
        self.base_offset
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.path.with_extension("index")
    }

    pub(crate) fn timeindex_path(&self) -> PathBuf {
        self.path.with_extension("timeindex")
    }

    pub(crate) fn meta(&self) -> RwLockReadGuard<'_, SegmentMeta> {
        self.meta.read()
    }

    /// Only the writer (and recovery, before the log is shared) mutates the meta.
    pub(crate) fn meta_mut(&self) -> RwLockWriteGuard<'_, SegmentMeta> {
        self.meta.write()
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.meta.read().next_offset
    }

    pub(crate) fn size(&self) -> u64 {
        self.meta.read().size
    }

    pub(crate) fn info(&self) -> SegmentInfo {
        let meta = self.meta.read();
        SegmentInfo {
            base_offset: self.base_offset,
            next_offset: meta.next_offset,
            size_bytes: meta.size,
            path: self.path.clone(),
        }
    }

    /// Seals the index and writes both index files (synced). The caller syncs the directory.
    /// Readers are not blocked while the files are written.
    pub(crate) fn persist_index(&self) -> Result<(), LogError> {
        self.meta.write().index.seal();
        let contents = self.meta.read().index.encode();
        index::write_files(&self.index_path(), &self.timeindex_path(), &contents)
            .map_err(LogError::io(&self.index_path()))
    }

    /// Removes the segment's files (the log file first, so a crash in between leaves at most
    /// orphan index files, which recovery deletes).
    pub(crate) fn delete_files(&self) -> Result<(), LogError> {
        std::fs::remove_file(&self.path).map_err(LogError::io(&self.path))?;
        self.delete_index_files()
    }

    /// Instead of deleting a segment retention removed, keeps its log file at
    /// `recycled-segment.{slot}` in `dir` (the index files are deleted), to be reused as a
    /// spare. The caller makes sure no reader still holds the segment, and syncs the directory.
    pub(crate) fn recycle_file(&self, dir: &Path, slot: usize) -> Result<(), LogError> {
        std::fs::rename(&self.path, recycled_path(dir, slot)).map_err(LogError::io(&self.path))?;
        self.delete_index_files()
    }

    fn delete_index_files(&self) -> Result<(), LogError> {
        for path in [self.index_path(), self.timeindex_path()] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(LogError::io(&path)(e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A cursor positioned at the index point at or before `offset`, with the offset of the
    /// frame there and the written size the cursor stops at. `None` if `offset` is not
    /// written in this segment yet.
    ///
    /// The cursor reads ahead the bytes up to the next index point (where the frame holding
    /// `offset` ends at the latest) plus `extra`, at most `readahead_max` per `pread`.
    fn seek(
        &self,
        offset: u64,
        extra: usize,
        readahead_max: usize,
    ) -> Option<(FrameCursor<'_>, u64, u64)> {
        debug_assert!(offset >= self.base_offset);
        let meta = self.meta.read();
        if offset >= meta.next_offset {
            return None;
        }
        let relative = u32::try_from(offset - self.base_offset).ok()?;
        let (floor, next_position) = meta.index.floor(relative)?;
        let start = u64::from(floor.position);
        let region = next_position.map_or(meta.size, u64::from) - start;
        let readahead = usize::try_from(region)
            .unwrap_or(usize::MAX)
            .saturating_add(extra)
            .min(readahead_max)
            .max(HEADER_BYTES);
        let cursor = self.cursor(start, meta.size, readahead);
        Some((
            cursor,
            self.base_offset + u64::from(floor.relative_offset),
            meta.size,
        ))
    }

    /// The entry containing `offset`, or `None` if it is not written in this segment yet.
    pub(crate) fn read_entry(&self, offset: u64) -> Result<Option<StoredEntry>, LogError> {
        Ok(self.read_entries(&[offset])?.pop().flatten())
    }

    /// The entries containing each of `offsets` (ascending, none below this segment's base),
    /// `None` for an offset not written here yet. One cursor moves on from each entry to the
    /// next wanted one unless the index puts that one more than [`BATCH_SCAN_GAP`] bytes
    /// further on, where a fresh seek is cheaper; so entries written together, as a batch of
    /// messages is, come from one `pread`.
    pub(crate) fn read_entries(
        &self,
        offsets: &[u64],
    ) -> Result<Vec<Option<StoredEntry>>, LogError> {
        // Index points are copied under the lock; the reads happen without it.
        let (size, points) = {
            let meta = self.meta.read();
            let points: Vec<Option<(u64, u64, u64)>> = offsets
                .iter()
                .map(|&offset| {
                    if offset >= meta.next_offset {
                        return None;
                    }
                    let relative = u32::try_from(offset - self.base_offset).ok()?;
                    let (floor, next_position) = meta.index.floor(relative)?;
                    Some((
                        u64::from(floor.position),
                        self.base_offset + u64::from(floor.relative_offset),
                        next_position.map_or(meta.size, u64::from),
                    ))
                })
                .collect();
            (meta.size, points)
        };
        let mut out = Vec::with_capacity(offsets.len());
        let mut cursor: Option<(FrameCursor<'_>, u64)> = None;
        let mut last: Option<StoredEntry> = None;
        for (i, (&offset, point)) in offsets.iter().zip(&points).enumerate() {
            let Some((floor_position, floor_offset, region_end)) = *point else {
                out.push(None);
                continue;
            };
            if let Some(entry) = last.as_ref().filter(|e| e.contains(offset)) {
                out.push(Some(entry.clone()));
                continue;
            }
            let near = cursor.as_ref().is_some_and(|(c, _)| {
                floor_position <= c.position().saturating_add(BATCH_SCAN_GAP)
            });
            if !near {
                // Read ahead over the run of offsets this cursor will serve (each next one
                // near the previous one's region), not over far ones that will seek afresh.
                let run_end = points[i + 1..]
                    .iter()
                    .flatten()
                    .try_fold(region_end, |end, &(position, _, next_end)| {
                        if position <= end.saturating_add(BATCH_SCAN_GAP) {
                            Ok(end.max(next_end))
                        } else {
                            Err(end)
                        }
                    })
                    .unwrap_or_else(|end| end);
                let readahead = usize::try_from(run_end.saturating_sub(floor_position))
                    .unwrap_or(usize::MAX)
                    .min(RANGE_READAHEAD_MAX);
                cursor = Some((self.cursor(floor_position, size, readahead), floor_offset));
            }
            let (c, expected) = cursor.as_mut().expect("a cursor was just placed");
            loop {
                let header = self.next_in_sequence(c, *expected)?;
                *expected = header.next_offset();
                if offset < header.next_offset() {
                    let entry = c
                        .read_entry(&header)
                        .map_err(|e| e.into_log_error(&self.path))?;
                    out.push(Some(entry.clone()));
                    last = Some(entry);
                    break;
                }
                c.skip(&header);
            }
        }
        Ok(out)
    }

    /// Appends to `out` the entries from the one containing `offset` to the end of this
    /// segment, while their frame sizes fit in `budget` (the first entry always fits when
    /// `out` is empty).
    pub(crate) fn read_from(
        &self,
        offset: u64,
        budget: &mut usize,
        out: &mut Vec<StoredEntry>,
    ) -> Result<ReadProgress, LogError> {
        let extra = budget.saturating_add(HEADER_BYTES);
        let Some((mut cursor, mut expected, end)) = self.seek(offset, extra, RANGE_READAHEAD_MAX)
        else {
            return Ok(ReadProgress::Exhausted {
                next_offset: self.next_offset().max(offset),
            });
        };
        while cursor.position() < end {
            let header = self.next_in_sequence(&mut cursor, expected)?;
            expected = header.next_offset();
            if header.next_offset() <= offset {
                cursor.skip(&header);
                continue;
            }
            let len = usize::try_from(header.frame_len()).unwrap_or(usize::MAX);
            if !out.is_empty() && len > *budget {
                return Ok(ReadProgress::Full);
            }
            out.push(
                cursor
                    .read_entry(&header)
                    .map_err(|e| e.into_log_error(&self.path))?,
            );
            *budget = budget.saturating_sub(len);
            if *budget == 0 {
                return Ok(ReadProgress::Full);
            }
        }
        Ok(ReadProgress::Exhausted {
            next_offset: expected,
        })
    }

    /// The first offset in this segment whose entry has a timestamp `>= timestamp_ms`.
    pub(crate) fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>, LogError> {
        let (start, end, mut expected) = {
            let meta = self.meta.read();
            let Some(point) = meta.index.time_floor(timestamp_ms) else {
                return Ok(None);
            };
            (
                u64::from(point.position),
                meta.size,
                self.base_offset + u64::from(point.relative_offset),
            )
        };
        let mut cursor = self.cursor(start, end, LOOKUP_READAHEAD_MAX);
        while cursor.position() < end {
            let header = self.next_in_sequence(&mut cursor, expected)?;
            if header.timestamp_ms >= timestamp_ms {
                // Verify the frame: a corrupt timestamp must not produce an answer.
                cursor
                    .verify(&header)
                    .map_err(|e| e.into_log_error(&self.path))?;
                return Ok(Some(header.offset));
            }
            cursor.skip(&header);
            expected = header.next_offset();
        }
        Ok(None)
    }

    /// The next header, which must start at offset `expected` (offsets are contiguous).
    fn next_in_sequence(
        &self,
        cursor: &mut FrameCursor<'_>,
        expected: u64,
    ) -> Result<crate::frame::FrameHeader, LogError> {
        let position = cursor.position();
        match cursor.next_header() {
            Ok(Some(header)) if header.offset == expected => Ok(header),
            Ok(Some(header)) => Err(LogError::corrupt(
                &self.path,
                position,
                format!(
                    "expected the entry at offset {expected}, found offset {}",
                    header.offset
                ),
            )),
            Ok(None) => Err(LogError::corrupt(
                &self.path,
                position,
                format!("segment data ends before offset {expected}"),
            )),
            Err(e) => Err(e.into_log_error(&self.path)),
        }
    }
}

/// Syncs a directory, making file creations and deletions in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(LogError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::{Segment, DIRECT_IO_ALIGN};

    #[test]
    fn writes_in_zero_filled_space_are_padded_to_a_whole_page() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 0, 4096).unwrap();
        // Nothing zero-filled: appends extend the file, no padding.
        assert_eq!(segment.page_padding(100), 0);
        segment.set_allocated(2 * DIRECT_IO_ALIGN);
        assert_eq!(segment.page_padding(100), 4096 - 100);
        assert_eq!(segment.page_padding(4096), 0);
        assert_eq!(segment.page_padding(4097), 4095);
        // The last page reaches beyond the zero-filled space: not padded.
        assert_eq!(segment.page_padding(2 * 4096 + 1), 0);
    }
}
