//! Recovery on open: find the segments, trust or rebuild their indexes, repair a torn tail.
//!
//! * Closed segments (all but the last) were synced, with their index files, before the next
//!   segment was created. Their index files are checked for internal consistency and against
//!   the segment's last frame (which must end exactly at the end of the file and pass its
//!   CRC). A missing or inconsistent index is rebuilt by scanning the segment, and any bad
//!   frame found while doing so is corruption.
//! * The last segment is scanned completely: every frame's length, CRC and offset. Its index
//!   files, if any, are ignored (they are rewritten when it is closed). What happens at the
//!   first bad frame is described in the crate documentation under "Torn tails", including
//!   the old frames of a recycled file.
//! * Segments must be contiguous: each one starts at the offset where the previous one ends.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Durability, LogConfig};
use crate::cursor::{CursorError, FrameCursor};
use crate::error::LogError;
use crate::frame::{self, FrameHeader};
use crate::index::{self, SparseIndex};
use crate::queue::WRITE_BATCH_MAX_BYTES;
use crate::segment::{segment_path, sync_dir, Segment, SegmentMeta};
use crate::syncer::MAX_UNSYNCED_BYTES;

const SCAN_READAHEAD: usize = 1 << 20;
const LAST_FRAME_READAHEAD: usize = 64 << 10;

/// Opens every segment in `dir` (creating the directory and a first segment if needed).
/// Returns the segments in offset order; the last one is where appends continue.
pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Vec<Arc<Segment>>, LogError> {
    std::fs::create_dir_all(dir).map_err(LogError::io(dir))?;
    // A spare segment file left by a crash holds only zeros (see `syncer.rs`).
    Segment::remove_spare(dir)?;
    let SegmentFiles { bases, index_files } = list_segment_files(dir)?;
    let mut dir_changed = false;
    for (base, path) in index_files {
        if bases.binary_search(&base).is_err() {
            tracing::warn!(path = %path.display(), "removing index file of a segment that no longer exists");
            std::fs::remove_file(&path).map_err(LogError::io(&path))?;
            dir_changed = true;
        }
    }
    if bases.is_empty() {
        let segment =
            Segment::create(dir, 0, config.index_interval_bytes)?.with_direct_io(config.direct_io);
        sync_dir(dir)?;
        return Ok(vec![Arc::new(segment)]);
    }
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base, "log");
        if let Some(previous) = segments.last() {
            let expected = previous.next_offset();
            if base != expected {
                return Err(LogError::corrupt(
                    &path,
                    0,
                    format!("segment starts at offset {base}, but the previous segment ends at offset {expected}"),
                ));
            }
        }
        let segment = if i + 1 == bases.len() {
            recover_last(base, path, config)?
        } else {
            let (segment, rebuilt) = recover_closed(base, path, config)?;
            dir_changed |= rebuilt;
            segment
        };
        segments.push(Arc::new(segment.with_direct_io(config.direct_io)));
    }
    if dir_changed {
        sync_dir(dir)?;
    }
    Ok(segments)
}

/// What a log directory holds.
struct SegmentFiles {
    /// Base offsets of the `.log` files, sorted.
    bases: Vec<u64>,
    /// Every index file, with the base offset in its name.
    index_files: Vec<(u64, PathBuf)>,
}

fn list_segment_files(dir: &Path) -> Result<SegmentFiles, LogError> {
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(LogError::io(dir))? {
        let entry = entry.map_err(LogError::io(dir))?;
        let name = entry.file_name();
        let Some((stem, extension)) = name.to_str().and_then(|n| n.split_once('.')) else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(base) = stem.parse::<u64>() else {
            continue;
        };
        match extension {
            "log" => bases.push(base),
            "index" | "timeindex" => index_files.push((base, entry.path())),
            _ => {}
        }
    }
    bases.sort_unstable();
    Ok(SegmentFiles { bases, index_files })
}

/// Opens a closed segment, rebuilding its index files if they cannot be trusted.
/// Returns whether index files were rewritten.
fn recover_closed(
    base: u64,
    path: PathBuf,
    config: &LogConfig,
) -> Result<(Segment, bool), LogError> {
    let file = Segment::open_file(&path)?;
    let size = file.metadata().map_err(LogError::io(&path))?.len();
    if size == 0 {
        return Err(LogError::corrupt(
            &path,
            0,
            "empty segment before the last segment",
        ));
    }
    let (index_path, timeindex_path) = (
        path.with_extension("index"),
        path.with_extension("timeindex"),
    );
    let loaded = SparseIndex::load(
        &index_path,
        &timeindex_path,
        size,
        config.index_interval_bytes,
    )
    .map_err(LogError::io(&index_path))?;
    let problem = match loaded {
        None => "missing or inconsistent".to_string(),
        Some(index) => match check_last_point(&file, base, size, &index) {
            Ok(next_offset) => {
                let meta = SegmentMeta {
                    size,
                    next_offset,
                    index,
                };
                return Ok((Segment::new(base, path, file, meta), false));
            }
            Err(reason) => reason,
        },
    };
    tracing::warn!(path = %index_path.display(), problem = %problem, "rebuilding segment index by scanning the segment");
    let scan = scan(&file, &path, base, size, config.index_interval_bytes)?;
    if let Some((position, reason)) = scan.bad {
        return Err(LogError::corrupt(
            &path,
            position,
            format!("{reason} (not in the last segment, so it cannot be a torn write)"),
        ));
    }
    let mut index = scan.index;
    index.seal();
    index::write_files(&index_path, &timeindex_path, &index.encode())
        .map_err(LogError::io(&index_path))?;
    let meta = SegmentMeta {
        size,
        next_offset: scan.next_offset,
        index,
    };
    Ok((Segment::new(base, path, file, meta), true))
}

/// Checks that a loaded index's last point is the segment's last frame: at the indexed offset,
/// intact, and ending exactly at the end of the file. Returns the segment's next offset.
fn check_last_point(file: &File, base: u64, size: u64, index: &SparseIndex) -> Result<u64, String> {
    let last = index.last().ok_or("empty index")?;
    let mut cursor = FrameCursor::new(
        file,
        u64::from(last.position),
        size,
        LAST_FRAME_READAHEAD,
        false,
    );
    let describe = |e: CursorError| match e {
        CursorError::Io(e) => e.to_string(),
        CursorError::Bad { reason, .. } => reason,
    };
    let header = cursor
        .next_header()
        .map_err(describe)?
        .ok_or("index points past the data")?;
    if header.offset != base + u64::from(last.relative_offset)
        || header.timestamp_ms > last.max_timestamp_ms
    {
        return Err(format!(
            "last index point does not match the frame at byte {}",
            last.position
        ));
    }
    cursor.verify(&header).map_err(describe)?;
    if cursor.position() != size {
        return Err(format!(
            "last index point is not the last frame (ends at {})",
            cursor.position()
        ));
    }
    Ok(header.next_offset())
}

/// Opens the last segment: scans every frame and truncates a torn tail. Zeros after the last
/// intact frame are zero-filled space (see `LogConfig::preallocate_bytes`), kept for appends.
fn recover_last(base: u64, path: PathBuf, config: &LogConfig) -> Result<Segment, LogError> {
    let file = Segment::open_file(&path)?;
    let size = file.metadata().map_err(LogError::io(&path))?.len();
    let scan = scan(&file, &path, base, size, config.index_interval_bytes)?;
    let mut allocated = scan.valid_len;
    if let Some((position, reason)) = scan.bad {
        let data_end = end_of_nonzero(&file, position, size).map_err(LogError::io(&path))?;
        if data_end == position {
            // Nothing but zeros: the end of the data, not a bad frame.
            allocated = size;
        } else {
            let tail = data_end - position;
            let window = torn_write_window(config);
            let stale = if config.durability == Durability::Always {
                let reach = window + frame::frame_len(config.max_entry_bytes as usize) as u64;
                stale_frames_after(&file, base, position, size, reach)
                    .map_err(LogError::io(&path))?
            } else {
                None
            };
            if let Some(stale_at) = stale {
                tracing::info!(
                    path = %path.display(),
                    position,
                    stale_from = stale_at,
                    "the last segment reuses a recycled file: cutting its old frames off after the last intact frame"
                );
            } else if config.durability == Durability::Always && tail > window {
                return Err(LogError::corrupt(
                    &path,
                    position,
                    format!(
                        "{reason}; {tail} bytes follow, more than can be unsynced ({window} bytes), so this is not a torn write"
                    ),
                ));
            } else {
                tracing::warn!(
                    path = %path.display(),
                    position,
                    dropped_bytes = tail,
                    reason = %reason,
                    "truncating the torn tail of the last segment"
                );
            }
            file.set_len(position).map_err(LogError::io(&path))?;
            file.sync_all().map_err(LogError::io(&path))?;
        }
    }
    let meta = SegmentMeta {
        size: scan.valid_len,
        next_offset: scan.next_offset,
        index: scan.index,
    };
    let segment = Segment::new(base, path, file, meta);
    segment.set_allocated(allocated);
    Ok(segment)
}

/// Where the last non-zero byte in `[from, size)` of `file` ends (`from` if there is none).
/// Reads backwards from the end, so zero-filled space costs one pass over itself.
fn end_of_nonzero(file: &File, from: u64, size: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; SCAN_READAHEAD];
    let mut end = size;
    while end > from {
        let len = usize::try_from(end - from)
            .unwrap_or(usize::MAX)
            .min(SCAN_READAHEAD);
        let start = end - len as u64;
        file.read_exact_at(&mut buf[..len], start)?;
        if let Some(last) = buf[..len].iter().rposition(|&b| b != 0) {
            return Ok(start + last as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// Where the frames of a recycled segment file begin after `from`, the first bad frame of the
/// last segment starting at `base`, if that is what follows it: a segment retention removed
/// may be reused as the next one (see `syncer.rs`), and its old frames then lie beyond the
/// new data. They are recognised as a chain of intact frames, each entirely below `base`
/// (older than anything in this segment) and each continuing the previous one's offsets,
/// that starts within `reach` of `from` (the torn-write window plus one frame: the old frame
/// the new data ends inside) and runs to the end of the file's non-zero bytes. Current data
/// after a corrupt frame fails that test (its offsets are `base` or above), and so does junk.
fn stale_frames_after(
    file: &File,
    base: u64,
    from: u64,
    size: u64,
    reach: u64,
) -> std::io::Result<Option<u64>> {
    let window_end = size.min(from.saturating_add(reach));
    let header_end = size.min(window_end + frame::HEADER_BYTES as u64);
    let mut buf = vec![0u8; (header_end - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    for candidate in from..window_end {
        let at = (candidate - from) as usize;
        let Some(raw) = buf.get(at..at + frame::HEADER_BYTES) else {
            break;
        };
        let header = match FrameHeader::parse(raw.try_into().expect("header-sized slice")) {
            Ok(header) => header,
            Err(_) => continue,
        };
        if header.next_offset() > base || candidate + header.frame_len() > size {
            continue;
        }
        if let Some(end) = stale_chain_end(file, base, candidate, size)? {
            if end_of_nonzero(file, end, size)? == end {
                return Ok(Some(candidate));
            }
        }
    }
    Ok(None)
}

/// Follows intact frames from `start`, each continuing the previous one's offsets and ending
/// at or below `base`; returns where the chain ends, or `None` if its first frame is not one.
fn stale_chain_end(file: &File, base: u64, start: u64, size: u64) -> std::io::Result<Option<u64>> {
    let mut cursor = FrameCursor::new(file, start, size, SCAN_READAHEAD, false);
    let mut expected: Option<u64> = None;
    loop {
        let header = match cursor.next_header() {
            Ok(Some(header)) => header,
            Ok(None) | Err(CursorError::Bad { .. }) => break,
            Err(CursorError::Io(e)) => return Err(e),
        };
        if expected.is_some_and(|next| header.offset != next) || header.next_offset() > base {
            break;
        }
        match cursor.verify(&header) {
            Ok(()) => expected = Some(header.next_offset()),
            Err(CursorError::Bad { .. }) => break,
            Err(CursorError::Io(e)) => return Err(e),
        }
    }
    Ok(expected.map(|_| cursor.position()))
}

/// The most bytes that can be written but not yet synced at the end of the last segment under
/// `Durability::Always`: the syncers' bound, or one batch if a single batch is larger (a
/// batch holds at most [`WRITE_BATCH_MAX_BYTES`] or one frame). Only that much can be torn.
pub(crate) fn torn_write_window(config: &LogConfig) -> u64 {
    let one_batch = WRITE_BATCH_MAX_BYTES.max(frame::frame_len(config.max_entry_bytes as usize));
    MAX_UNSYNCED_BYTES.max(one_batch as u64)
}

/// The result of scanning a segment from its start.
struct Scan {
    index: SparseIndex,
    /// Bytes of intact frames from the start.
    valid_len: u64,
    next_offset: u64,
    /// The first bad frame: its position and what is wrong with it.
    bad: Option<(u64, String)>,
}

/// Reads every frame of a segment, checking lengths, CRCs and offset continuity, and builds
/// its index. Stops at the first bad frame. Only I/O failures are errors.
fn scan(file: &File, path: &Path, base: u64, size: u64, interval: u32) -> Result<Scan, LogError> {
    let mut cursor = FrameCursor::new(file, 0, size, SCAN_READAHEAD, false);
    let mut index = SparseIndex::new(interval);
    let mut next_offset = base;
    let bad = loop {
        let position = cursor.position();
        let header = match cursor.next_header() {
            Ok(Some(header)) => header,
            Ok(None) => break None,
            Err(CursorError::Bad { position, reason }) => break Some((position, reason)),
            Err(CursorError::Io(e)) => return Err(LogError::io(path)(e)),
        };
        if header.offset != next_offset {
            break Some((
                position,
                format!(
                    "expected the entry at offset {next_offset}, found offset {}",
                    header.offset
                ),
            ));
        }
        let (Ok(relative), Ok(position32)) =
            (u32::try_from(header.offset - base), u32::try_from(position))
        else {
            break Some((
                position,
                "frame lies beyond what a segment can index".to_string(),
            ));
        };
        match cursor.verify(&header) {
            Ok(()) => {}
            Err(CursorError::Bad { position, reason }) => break Some((position, reason)),
            Err(CursorError::Io(e)) => return Err(LogError::io(path)(e)),
        }
        index.observe(relative, position32, header.timestamp_ms);
        next_offset = header.next_offset();
    };
    Ok(Scan {
        index,
        valid_len: cursor.position(),
        next_offset,
        bad,
    })
}
