//! Recovery on open: torn tails, corruption, and lost or damaged index files.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferry_log::{Durability, Entry, Log, LogConfig, LogError, StoredEntry};
use proptest::prelude::*;

/// Every test entry has a 100-byte payload, so every frame is 128 bytes.
const FRAME: u64 = 128;

/// With 64 KiB entries at most, the torn-write window is one 4 MiB write batch.
fn config(segment_bytes: u64, durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 512,
        durability,
        max_entry_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

fn body(offset: u64) -> Vec<u8> {
    (0..100)
        .map(|i| (offset as u8).wrapping_mul(31).wrapping_add(i))
        .collect()
}

/// Opens the log, appends `n` entries, closes it and returns its segment files.
fn write_log(dir: &Path, cfg: &LogConfig, n: u64) -> Vec<PathBuf> {
    let log = Log::open(dir, cfg.clone()).unwrap();
    let next = log.next_offset();
    let entries: Vec<Entry> = (next..next + n)
        .map(|o| Entry::new(o as i64, body(o)))
        .collect();
    log.append(&entries).unwrap();
    log.close().unwrap();
    log.segments().into_iter().map(|s| s.path).collect()
}

fn read_all(log: &Log) -> Result<Vec<StoredEntry>, LogError> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    loop {
        let batch = log.read(from, 4096)?;
        let Some(last) = batch.last() else {
            return Ok(out);
        };
        from = last.next_offset();
        out.extend(batch);
    }
}

fn assert_entries(log: &Log, offsets: std::ops::Range<u64>) {
    let all = read_all(log).unwrap();
    assert_eq!(
        all.iter().map(|e| e.offset).collect::<Vec<_>>(),
        offsets.clone().collect::<Vec<_>>()
    );
    for entry in all {
        assert_eq!(entry.payload, body(entry.offset));
    }
}

fn flip_byte(path: &Path, position: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).unwrap();
    file.write_all_at(&[byte[0] ^ 0x5a], position).unwrap();
}

fn expect_corrupt(result: Result<Log, LogError>, file: &Path, at: u64) {
    match result {
        Err(error @ LogError::Corrupt { .. }) => {
            let LogError::Corrupt { path, position, .. } = &error else {
                unreachable!()
            };
            assert_eq!((path.as_path(), *position), (file, at), "{error}");
            let message = error.to_string();
            assert!(
                message.contains(&file.display().to_string())
                    && message.contains(&format!("byte {at}")),
                "{message}"
            );
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("expected corruption, but the log opened"),
    }
}

#[test]
fn truncated_tail_is_cut_off_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, Durability::Always);
    let files = write_log(dir.path(), &cfg, 20);
    let file = OpenOptions::new().write(true).open(&files[0]).unwrap();
    file.set_len(20 * FRAME - 50).unwrap();
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.next_offset(), 19);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 19 * FRAME);
    assert_entries(&log, 0..19);
    log.append(&[Entry::new(19, body(19))]).unwrap();
    log.close().unwrap();
    assert_entries(&Log::open(dir.path(), cfg).unwrap(), 0..20);
}

#[test]
fn garbage_after_the_last_frame_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, Durability::Always);
    let files = write_log(dir.path(), &cfg, 10);
    // A half-written header followed by zeros, as a crash mid-write can leave behind.
    let mut file = OpenOptions::new().append(true).open(&files[0]).unwrap();
    file.write_all(&[0x80, 0, 0, 0, 1, 2]).unwrap();
    file.write_all(&vec![0u8; 8192]).unwrap();
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.next_offset(), 10);
    assert_entries(&log, 0..10);
}

#[test]
fn flipped_byte_followed_by_more_than_one_write_batch_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(64 << 20, Durability::Always);
    // 100,000 frames of 128 bytes: 12.8 MB, more than the 8 MiB that may be written but not
    // yet synced after frame 3.
    let files = write_log(dir.path(), &cfg, 100_000);
    assert_eq!(files.len(), 1);
    flip_byte(&files[0], 3 * FRAME + 60);
    expect_corrupt(Log::open(dir.path(), cfg.clone()), &files[0], 3 * FRAME);
    // The same damage within the last batch's reach is a torn tail.
    flip_byte(&files[0], 3 * FRAME + 60);
    flip_byte(&files[0], 99_990 * FRAME + 60);
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.next_offset(), 99_990);
}

#[test]
fn zeros_after_the_last_frame_are_the_end_of_the_data_and_are_cut_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(64 << 20, Durability::Always);
    let files = write_log(dir.path(), &cfg, 20);
    // What a crash leaves behind when space after the last frame was zero-filled.
    let file = OpenOptions::new().write(true).open(&files[0]).unwrap();
    file.set_len(20 * FRAME + (3 << 20)).unwrap();
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.next_offset(), 20);
    assert_entries(&log, 0..20);
    let entries: Vec<Entry> = (20..30).map(|o| Entry::new(o, body(o as u64))).collect();
    log.append(&entries).unwrap();
    log.close().unwrap();
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 30 * FRAME);
    assert_entries(&Log::open(dir.path(), cfg).unwrap(), 0..30);
}

#[test]
fn a_torn_tail_followed_by_zeros_is_still_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(64 << 20, Durability::Always);
    let files = write_log(dir.path(), &cfg, 100);
    flip_byte(&files[0], 95 * FRAME + 60);
    // Far more zeros than the torn-write window: only non-zero bytes count.
    let file = OpenOptions::new().write(true).open(&files[0]).unwrap();
    file.set_len(100 * FRAME + (32 << 20)).unwrap();
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.next_offset(), 95);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 95 * FRAME);
}

#[test]
fn preallocated_space_is_zero_filled_ahead_of_the_writer_and_survives_a_crash_copy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        preallocate_bytes: 1 << 20,
        ..config(64 << 20, Durability::Always)
    };
    let log = Log::open(dir.path().join("log"), cfg.clone()).unwrap();
    let path = log.segments()[0].path.clone();
    let mut next = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // Zero-filling runs after a sync, in the background: append until it shows.
    while std::fs::metadata(&path).unwrap().len() <= next * FRAME {
        assert!(
            std::time::Instant::now() < deadline,
            "no zero-filled space appeared"
        );
        let appended = log.append(&[Entry::new(next as i64, body(next))]).unwrap();
        log.wait_durable_blocking(appended.next_offset).unwrap();
        next = appended.next_offset;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let entries: Vec<Entry> = (next..next + 50)
        .map(|o| Entry::new(o as i64, body(o)))
        .collect();
    let appended = log.append(&entries).unwrap();
    log.wait_durable_blocking(appended.next_offset).unwrap();
    let total = appended.next_offset;
    // The files as a crash would leave them: frames, then zeros.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    let copied_len = std::fs::metadata(copy.join(path.file_name().unwrap()))
        .unwrap()
        .len();
    assert!(
        copied_len > total * FRAME,
        "zero-filled space after the frames"
    );
    let recovered = Log::open(&copy, cfg.clone()).unwrap();
    assert_eq!(recovered.next_offset(), total);
    assert_entries(&recovered, 0..total);
    drop(recovered);
    log.close().unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        total * FRAME,
        "trimmed on close"
    );
}

/// A log that prepares its next segments (zero-filled or recycled): `always`, preallocated.
fn busy_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        preallocate_bytes: 64 << 10,
        ..config(segment_bytes, Durability::Always)
    }
}

/// Appends the next `n` entries (offsets from `*next`) and waits until they are durable.
fn append(log: &Log, next: &mut u64, n: u64) {
    let entries: Vec<Entry> = (*next..*next + n)
        .map(|o| Entry::new(o as i64, body(o)))
        .collect();
    let appended = log.append(&entries).unwrap();
    log.wait_durable_blocking(appended.next_offset).unwrap();
    *next = appended.next_offset;
}

#[test]
fn a_busy_log_rolls_into_a_prepared_segment_and_a_crash_copy_of_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes = 1 << 20;
    let cfg = busy_config(segment_bytes);
    let path = dir.path().join("log");
    let spare = path.join("spare-segment");
    let log = Log::open(&path, cfg.clone()).unwrap();
    let mut next = 0u64;
    // The spare is prepared in the background once an eighth of the segment is written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !spare.exists() || std::fs::metadata(&spare).unwrap().len() < segment_bytes {
        assert!(
            std::time::Instant::now() < deadline,
            "no spare segment appeared"
        );
        append(&log, &mut next, 16);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(log.segments().len() == 1 && next * FRAME >= segment_bytes / 8);
    while log.segments().len() == 1 {
        append(&log, &mut next, 64);
    }
    append(&log, &mut next, 10);
    let segments = log.segments();
    let active = &segments[1];
    assert_eq!(active.base_offset, segments[0].next_offset);
    assert!(
        std::fs::metadata(&active.path).unwrap().len() >= segment_bytes,
        "the new segment is the spare renamed, zero-filled to the rolling size"
    );
    assert!(active.size_bytes < segment_bytes / 8);
    assert_eq!(
        std::fs::metadata(&segments[0].path).unwrap().len(),
        segments[0].size_bytes,
        "the closed segment ends at its last frame"
    );
    assert_entries(&log, 0..next);
    // The files as a crash would leave them: the active segment ends in zeros, and a spare
    // (here a junk one) may be lying there.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for segment in &segments {
        std::fs::copy(&segment.path, copy.join(segment.path.file_name().unwrap())).unwrap();
    }
    std::fs::write(copy.join("spare-segment"), vec![0xAB; 8192]).unwrap();
    let recovered = Log::open(&copy, cfg.clone()).unwrap();
    assert!(!copy.join("spare-segment").exists(), "removed on open");
    assert_eq!(recovered.next_offset(), next);
    assert_entries(&recovered, 0..next);
    let appended = recovered
        .append(&[Entry::new(next as i64, body(next))])
        .unwrap();
    recovered
        .wait_durable_blocking(appended.next_offset)
        .unwrap();
    assert_entries(&recovered, 0..next + 1);
    recovered.close().unwrap();
    log.close().unwrap();
    assert!(!spare.exists(), "a closed log keeps no spare");
    let active_path = &log.segments()[1].path;
    assert_eq!(
        std::fs::metadata(active_path).unwrap().len(),
        log.segments()[1].size_bytes,
        "trimmed on close"
    );
    let reopened = Log::open(&path, cfg).unwrap();
    assert_entries(&reopened, 0..next);
}

#[test]
fn retention_recycles_a_removed_segment_as_a_later_one_and_a_crash_copy_cuts_its_old_frames() {
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes = 1 << 20;
    let cfg = busy_config(segment_bytes);
    let path = dir.path().join("log");
    let recycled = path.join("recycled-segment.0");
    let log = Log::open(&path, cfg.clone()).unwrap();
    let mut next = 0u64;
    while log.segments().len() == 1 {
        append(&log, &mut next, 64);
    }
    // Just rolled: the new segment is far from the eighth at which its successor is prepared.
    let first = log.segments()[0].clone();
    let old_bytes = std::fs::read(&first.path).unwrap();
    assert_eq!(old_bytes.len() as u64, first.size_bytes);
    assert_eq!(
        log.truncate_before(first.next_offset).unwrap(),
        first.next_offset
    );
    assert!(!first.path.exists() && !first.path.with_extension("index").exists());
    assert_eq!(
        std::fs::read(&recycled).unwrap(),
        old_bytes,
        "kept, not deleted"
    );
    // The next spare to be prepared is the recycled file (a spare already prepared by
    // zero-filling may be taken by the next roll first), and the roll after that takes it.
    while recycled.exists() {
        assert!(
            log.segments().len() < 5,
            "the recycled file was never reused"
        );
        append(&log, &mut next, 64);
    }
    let rolls = log.segments().len();
    while log.segments().len() == rolls {
        append(&log, &mut next, 64);
    }
    append(&log, &mut next, 10);
    let segments = log.segments();
    let active = segments.last().unwrap();
    let file = std::fs::read(&active.path).unwrap();
    assert!(file.len() >= old_bytes.len());
    let old_from = (active.size_bytes as usize).next_multiple_of(4096);
    assert!(old_from + 4096 < old_bytes.len());
    assert!(
        file[old_from..old_bytes.len()] == old_bytes[old_from..],
        "the new segment overwrites the recycled file instead of zero-filling it first"
    );
    assert_entries(&log, first.next_offset..next);
    // The files as a crash would leave them: the active segment's data, then old frames.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for segment in &segments {
        std::fs::copy(&segment.path, copy.join(segment.path.file_name().unwrap())).unwrap();
    }
    std::fs::write(copy.join("recycled-segment.1"), &old_bytes).unwrap();
    let recovered = Log::open(&copy, cfg.clone()).unwrap();
    assert!(!copy.join("recycled-segment.1").exists(), "removed on open");
    assert_eq!(recovered.next_offset(), next);
    assert_entries(&recovered, first.next_offset..next);
    let copied_active = copy.join(active.path.file_name().unwrap());
    assert_eq!(
        std::fs::metadata(&copied_active).unwrap().len(),
        active.size_bytes,
        "the old frames are cut off"
    );
    append(&recovered, &mut next, 1);
    assert_entries(&recovered, first.next_offset..next);
    recovered.close().unwrap();
    log.close().unwrap();
    assert!(!path.join("spare-segment").exists() && !recycled.exists());
    assert_entries(&Log::open(&path, cfg).unwrap(), first.next_offset..next - 1);
}

/// Builds the last segment of a recycled file by hand: `current` frames of its own, written
/// over the file of an older segment `old` (whose frames all have lower offsets), as the
/// writer leaves it: whole pages, the rest of the old file after them.
fn recycled_last_segment(old: &Path, current: &Path) -> u64 {
    let mut bytes = std::fs::read(old).unwrap();
    let data = std::fs::read(current).unwrap();
    let padded = data.len().next_multiple_of(4096);
    assert!(padded < bytes.len());
    bytes[..data.len()].copy_from_slice(&data);
    bytes[data.len()..padded].fill(0);
    std::fs::write(current, &bytes).unwrap();
    data.len() as u64
}

/// A log whose last segment holds `current` frames written over the file of its first, full
/// 12 MiB segment (removed), as `recycled_last_segment` builds it. Returns the last segment's
/// path and first offset.
fn log_with_recycled_last_segment(dir: &Path, cfg: &LogConfig, current: u64) -> (PathBuf, u64) {
    let per_segment = cfg.segment_bytes / FRAME;
    let files = write_log(dir, cfg, per_segment + current);
    assert_eq!(files.len(), 2);
    assert_eq!(recycled_last_segment(&files[0], &files[1]), current * FRAME);
    for extension in ["log", "index", "timeindex"] {
        std::fs::remove_file(files[0].with_extension(extension)).unwrap();
    }
    (files[1].clone(), per_segment)
}

#[test]
fn old_frames_of_a_recycled_file_after_the_data_are_cut_but_corruption_before_them_is_not() {
    // 12 MiB segments: more than the 8 MiB torn-write window fits in one.
    let cfg = config(12 << 20, Durability::Always);
    // 10,000 frames (1.3 MB) of its own, then 11 MB of the old segment's frames.
    let dir = tempfile::tempdir().unwrap();
    let (last, base) = log_with_recycled_last_segment(dir.path(), &cfg, 10_000);
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.next_offset(), base + 10_000);
    assert_entries(&log, base..base + 10_000);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), 10_000 * FRAME);
    log.close().unwrap();

    // 80,000 frames of its own with a flipped byte in the 1,000th: more than the window of
    // this segment's own frames follow it, so it is corruption, not the end of the data.
    let dir = tempfile::tempdir().unwrap();
    let (last, _) = log_with_recycled_last_segment(dir.path(), &cfg, 80_000);
    flip_byte(&last, 1_000 * FRAME + 60);
    expect_corrupt(Log::open(dir.path(), cfg), &last, 1_000 * FRAME);
}

#[test]
fn relaxed_modes_truncate_the_last_segment_at_the_first_bad_frame() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(64 << 20, Durability::Never);
    let files = write_log(dir.path(), &cfg, 50_000);
    flip_byte(&files[0], 3 * FRAME + 60);
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.next_offset(), 3);
    assert_entries(&log, 0..3);
}

#[test]
fn flipped_byte_in_a_closed_segment_fails_open_when_its_index_must_be_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2048, Durability::Always);
    let files = write_log(dir.path(), &cfg, 100);
    assert!(files.len() > 3);
    flip_byte(&files[1], 5 * FRAME + 40);
    std::fs::remove_file(files[1].with_extension("index")).unwrap();
    expect_corrupt(Log::open(dir.path(), cfg), &files[1], 5 * FRAME);
}

#[test]
fn flipped_byte_in_the_last_frame_of_a_closed_segment_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2048, Durability::Always);
    let files = write_log(dir.path(), &cfg, 100);
    let last_frame = std::fs::metadata(&files[0]).unwrap().len() - FRAME;
    flip_byte(&files[0], last_frame + 100);
    expect_corrupt(Log::open(dir.path(), cfg), &files[0], last_frame);
}

#[test]
fn flipped_byte_in_a_closed_segment_is_never_returned_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2048, Durability::Always);
    let files = write_log(dir.path(), &cfg, 100);
    flip_byte(&files[0], 2 * FRAME + 40);
    let log = Log::open(dir.path(), cfg).unwrap();
    let err = log.read_entry(2).unwrap_err();
    assert!(
        matches!(&err, LogError::Corrupt { path, position, .. } if path == &files[0] && *position == 2 * FRAME),
        "{err}"
    );
    assert!(matches!(
        log.read(0, 1 << 20),
        Err(LogError::Corrupt { .. })
    ));
    assert!(matches!(read_all(&log), Err(LogError::Corrupt { .. })));
    assert_eq!(log.read_entry(1).unwrap().payload, body(1));
    assert_eq!(log.read_entry(3).unwrap().payload, body(3));
}

#[test]
fn missing_or_damaged_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2048, Durability::Always);
    let files = write_log(dir.path(), &cfg, 300);
    let closed = &files[..files.len() - 1];
    let original: Vec<(Vec<u8>, Vec<u8>)> = closed
        .iter()
        .map(|f| {
            (
                std::fs::read(f.with_extension("index")).unwrap(),
                std::fs::read(f.with_extension("timeindex")).unwrap(),
            )
        })
        .collect();
    assert!(original.iter().all(|(i, t)| !i.is_empty() && !t.is_empty()));
    std::fs::remove_file(closed[0].with_extension("index")).unwrap();
    std::fs::remove_file(closed[1].with_extension("timeindex")).unwrap();
    std::fs::write(closed[2].with_extension("index"), b"garbage!").unwrap();
    let mut cut = original[3].0.clone();
    cut.truncate(cut.len() - 8);
    std::fs::write(closed[3].with_extension("index"), cut).unwrap();

    let log = Log::open(dir.path(), cfg).unwrap();
    for (file, (index, timeindex)) in closed.iter().zip(&original) {
        assert_eq!(&std::fs::read(file.with_extension("index")).unwrap(), index);
        assert_eq!(
            &std::fs::read(file.with_extension("timeindex")).unwrap(),
            timeindex
        );
    }
    assert_entries(&log, 0..300);
    assert_eq!(log.read_entry(123).unwrap().payload, body(123));
    assert_eq!(log.offset_for_timestamp(77).unwrap(), Some(77));
}

#[test]
fn orphan_index_files_are_removed_and_missing_segments_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2048, Durability::Always);
    let files = write_log(dir.path(), &cfg, 100);
    let orphan = dir.path().join("00000000000000099999.index");
    std::fs::write(&orphan, b"").unwrap();
    drop(Log::open(dir.path(), cfg.clone()).unwrap());
    assert!(!orphan.exists());
    std::fs::remove_file(&files[1]).unwrap();
    expect_corrupt(Log::open(dir.path(), cfg), &files[2], 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Cutting the last segment at any byte loses exactly the frames that are no longer
    /// complete, under every durability mode.
    #[test]
    fn a_tail_cut_anywhere_keeps_exactly_the_complete_frames(
        sizes in prop::collection::vec(0usize..300, 1..40),
        cut in 0.0f64..1.0,
        durability in prop_oneof![Just(Durability::Always), Just(Durability::Never)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(1 << 20, durability);
        let log = Log::open(dir.path(), cfg.clone()).unwrap();
        let entries: Vec<Entry> = sizes.iter().enumerate().map(|(i, &n)| Entry::new(i as i64, vec![i as u8; n])).collect();
        log.append(&entries).unwrap();
        log.close().unwrap();
        let path = log.segments()[0].path.clone();
        let len = std::fs::metadata(&path).unwrap().len();
        let cut_at = (len as f64 * cut) as u64;
        OpenOptions::new().write(true).open(&path).unwrap().set_len(cut_at).unwrap();

        let mut end = 0;
        let complete = sizes.iter().take_while(|&&n| { end += 28 + n as u64; end <= cut_at }).count();
        let log = Log::open(dir.path(), cfg).unwrap();
        prop_assert_eq!(log.next_offset(), complete as u64);
        let read = read_all(&log).unwrap();
        prop_assert_eq!(read.len(), complete);
        for (entry, expected) in read.iter().zip(&entries) {
            prop_assert_eq!(&entry.payload, &expected.payload);
        }
    }
}
