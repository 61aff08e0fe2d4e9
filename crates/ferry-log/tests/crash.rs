//! Crash test: a child process appends under load with `Durability::Always` and reports each
//! acknowledged entry, while retention keeps removing its oldest segments (which the log
//! recycles as new ones); the parent kills it with SIGKILL at a random moment, reopens the log
//! and checks that every acknowledged entry not yet removed by retention is present and
//! intact.
//!
//! The child is this same test binary, re-executed with `CHILD_DIR_ENV` set and filtered to
//! the `crash_child` test, so no extra binary or feature is needed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_log::{Durability, Entry, Log, LogConfig, TailCache};
use rand::{Rng, SeedableRng};

const CHILD_DIR_ENV: &str = "FERRY_LOG_CRASH_CHILD_DIR";
/// Set for the child of a round that writes with direct I/O.
const CHILD_DIRECT_ENV: &str = "FERRY_LOG_CRASH_CHILD_DIRECT";
const APPENDER_THREADS: u64 = 4;
/// The child stops by itself after this long, should the parent never kill it.
const CHILD_MAX_RUNTIME: Duration = Duration::from_secs(60);
const ROUNDS: usize = 6;
/// Retention keeps about this many of the newest entries (a few segments).
const RETAINED_ENTRIES: u64 = 200;

/// Small segments so crashes also land around segment rolls, zero-filled ahead of the writer
/// so crashes also leave zero-filled space behind the last frame. Rounds alternate between
/// writing through the page cache and with direct I/O, on the same log.
fn config(direct_io: bool) -> LogConfig {
    LogConfig {
        segment_bytes: 128 << 10,
        index_interval_bytes: 1024,
        durability: Durability::Always,
        max_entry_bytes: 64 << 10,
        on_sync: None,
        preallocate_bytes: 64 << 10,
        direct_io,
        tail_cache: Some(TailCache::new(1 << 20)),
    }
}

/// An acknowledged entry as the child reports it: `ACK <offset> <length> <crc32c>`.
#[derive(Debug, PartialEq, Eq)]
struct Ack {
    len: usize,
    crc: u32,
}

fn parse_ack(line: &str) -> Option<(u64, Ack)> {
    let mut fields = line.strip_suffix('\n')?.strip_prefix("ACK ")?.split(' ');
    let offset = fields.next()?.parse().ok()?;
    let len = fields.next()?.parse().ok()?;
    let crc = fields.next()?.parse().ok()?;
    Some((offset, Ack { len, crc }))
}

/// The child's workload; runs only when re-executed by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let log = Log::open(&dir, config(std::env::var_os(CHILD_DIRECT_ENV).is_some())).unwrap();
    let started = Instant::now();
    let threads: Vec<_> = (0..APPENDER_THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut rng =
                    rand::rngs::StdRng::seed_from_u64(t ^ started.elapsed().as_nanos() as u64);
                while started.elapsed() < CHILD_MAX_RUNTIME {
                    // Several entries per call, of random sizes up to a few KiB.
                    let entries: Vec<Entry> = (0..rng.gen_range(1..=4))
                        .map(|_| {
                            let mut payload = vec![0u8; rng.gen_range(0..6000)];
                            rng.fill(&mut payload[..]);
                            Entry::new(rng.gen_range(0..1_000_000), payload)
                        })
                        .collect();
                    let appended = log.append(&entries).unwrap();
                    log.wait_durable_blocking(appended.next_offset).unwrap();
                    let mut out = std::io::stdout().lock();
                    for (i, entry) in entries.iter().enumerate() {
                        let offset = appended.base_offset + i as u64;
                        let crc = crc32c::crc32c(&entry.payload);
                        writeln!(out, "ACK {offset} {} {crc}", entry.payload.len()).unwrap();
                    }
                }
            })
        })
        .collect();
    // Retention: removed segments are recycled into new ones, so crashes also leave a last
    // segment whose file still holds an older segment's frames after the new data.
    while started.elapsed() < CHILD_MAX_RUNTIME {
        std::thread::sleep(Duration::from_millis(5));
        let keep_from = log.durable_offset().saturating_sub(RETAINED_ENTRIES);
        log.truncate_before(keep_from).unwrap();
    }
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn acknowledged_entries_survive_sigkill() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    // Under the target directory: /tmp may be a tmpfs, which has no direct I/O.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut rng = rand::thread_rng();
    let mut acked: BTreeMap<u64, Ack> = BTreeMap::new();
    for round in 0..ROUNDS {
        let direct_io = round % 2 == 1;
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path());
        if direct_io {
            command.env(CHILD_DIRECT_ENV, "1");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let kill_after = rng.gen_range(1..1500);
        let mut line = String::new();
        let mut seen = 0;
        while seen < kill_after {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("round {round}: the child exited early: {:?}", child.wait());
            }
            if let Some((offset, ack)) = parse_ack(&line) {
                acked.insert(offset, ack);
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..20_000)));
        child.kill().unwrap();
        // Lines still in the pipe were acknowledged before the kill; a cut-off last line
        // (no newline) is ignored by `parse_ack`.
        loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some((offset, ack)) = parse_ack(&line) {
                acked.insert(offset, ack);
            }
        }
        child.wait().unwrap();

        let log = Log::open(dir.path(), config(!direct_io)).unwrap();
        let start = log.start_offset();
        assert!(
            start == 0 || start + RETAINED_ENTRIES <= log.next_offset(),
            "round {round}: retention never removes the newest {RETAINED_ENTRIES} entries"
        );
        acked = acked.split_off(&start);
        let mut next = start;
        loop {
            // Every read is CRC-checked: any corruption fails here.
            let batch = log.read(next, 1 << 20).unwrap();
            let Some(last) = batch.last() else { break };
            for entry in &batch {
                assert_eq!(entry.offset, next, "round {round}: offsets are contiguous");
                next = entry.next_offset();
                if let Some(ack) = acked.get(&entry.offset) {
                    let found = Ack {
                        len: entry.payload.len(),
                        crc: crc32c::crc32c(&entry.payload),
                    };
                    assert_eq!(&found, ack, "round {round}: entry {} changed", entry.offset);
                }
            }
            debug_assert_eq!(next, last.next_offset());
        }
        assert_eq!(next, log.next_offset());
        if let Some(&highest) = acked.keys().next_back() {
            assert!(
                highest < log.next_offset(),
                "round {round}: acknowledged offset {highest} lost (log ends at {})",
                log.next_offset()
            );
        }
        for (offset, ack) in acked.range(..) {
            let entry = log.read_entry(*offset).unwrap();
            assert_eq!(
                (entry.payload.len(), crc32c::crc32c(&entry.payload)),
                (ack.len, ack.crc)
            );
        }
        eprintln!(
            "round {round} (direct I/O {direct_io}): {} entries acknowledged and retained, log from {start} to {}, {} segments",
            acked.len(),
            log.next_offset(),
            log.segments().len()
        );
        log.close().unwrap();
    }
}
