//! Syncers: the threads that `fdatasync` the active segment under `Durability::Always`.
//!
//! After each batch the writer publishes how far it has written and gets it synced. A sync
//! claims everything written so far, runs one `fdatasync`, and publishes the claim as durable:
//! `fdatasync` makes durable every write that completed before it was called, so the claim
//! is safe whatever other syncs are doing.
//!
//! Who runs the sync: while syncs are quick (a smoothed average under [`INLINE_SYNC_BELOW`])
//! and none is running, the writer thread runs it itself and writes the next batch, gathered
//! meanwhile, right after; that saves a hand-off to another thread on every commit, which on a
//! busy two-core machine costs as much as the sync (measured in `docs/benchmarks.md`).
//! Otherwise it hands the sync to a syncer thread and goes straight on to the next batch.
//!
//! Syncs overlap only when they are slow. While a sync younger than [`OVERLAP_AFTER`] runs,
//! what is written meanwhile waits for it to finish and is then claimed whole by the next
//! sync: on a disk that flushes in a couple of hundred microseconds, concurrent flushes only
//! queue behind each other in the device and make every one of them slower, while one sync
//! at a time gathers bigger groups. Once the running sync is older than that (a loaded
//! machine, where a lone `fdatasync` can take milliseconds), another sync starts on what was
//! written since, up to [`MAX_SYNCERS`] at once, so a batch does not wait for a slow sync that
//! does not cover it.
//!
//! Syncer threads start on demand and exit after [`IDLE_EXIT`] without work, so an idle log
//! costs only its writer thread.
//!
//! With `LogConfig::preallocate_bytes`, a sync that finds less than half of that much
//! zero-filled space ahead of the writer plans a zero fill of the next stretch of the active
//! segment (up to where it rolls), and a syncer thread writes it in the background (never the
//! writer: a fill takes milliseconds); the writer never writes into a stretch while it is being
//! filled.
//!
//! A busy log also prepares its next segment: once the active segment holds an eighth of the
//! size at which it rolls, a syncer thread writes a whole segment's worth of zeros to a spare
//! file (`segment::SPARE_FILE`) and syncs it, and the roll renames that file into place. All
//! of the new segment's blocks are then allocated, written and recorded before its first
//! append, so no `fdatasync` of it ever has to commit an inode update; zero-filling the
//! active segment a stretch at a time costs one such commit (about a millisecond, measured in
//! `docs/benchmarks.md`) per stretch. One fill, of either kind, runs at a time. The spare is
//! removed when the log closes, and on open if a crash left one.
//!
//! When retention has left a removed segment's file for recycling (`Log::truncate_before`),
//! the spare is that file, renamed, instead of a new one of zeros: its blocks are just as
//! allocated and written, and no byte goes to the disk for it. Its old frames then lie beyond
//! the new data; recovery tells them apart (see `recovery.rs`).
//!
//! Bounds that keep recovery's torn-write rule true (see the crate docs): at most
//! [`MAX_UNSYNCED_BYTES`] (or one batch, if a single batch is larger) are written but not yet
//! durable, and the writer waits for every sync to finish before it rolls to a new segment,
//! so only the last segment can ever hold unsynced bytes.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::aligned::align_up;
use crate::config::SyncStats;
use crate::error::LogError;
use crate::log::Shared;
use crate::queue::WRITE_BATCH_MAX_BYTES;
use crate::segment::Segment;

/// Most concurrent `fdatasync`s of one log.
pub(crate) const MAX_SYNCERS: usize = 4;
/// How old the newest running sync must be before another one starts beside it.
pub(crate) const OVERLAP_AFTER: Duration = Duration::from_millis(1);
/// Most bytes written but not yet durable, unless one batch alone is larger.
pub(crate) const MAX_UNSYNCED_BYTES: u64 = 2 * WRITE_BATCH_MAX_BYTES as u64;
/// The smallest stretch zero-filled at once.
const MIN_FILL_BYTES: u64 = 64 << 10;
/// A spare segment is prepared once the active segment holds `1 / SPARE_AFTER_FRACTION` of
/// the size at which it rolls (so quiet logs never get one).
const SPARE_AFTER_FRACTION: u64 = 8;
/// A syncer thread with no work for this long exits.
const IDLE_EXIT: Duration = Duration::from_secs(5);
/// The writer runs a sync itself, rather than handing it to a syncer thread, only while syncs
/// average less than this (a sync it runs cannot be overlapped, see the module docs).
const INLINE_SYNC_BELOW: Duration = Duration::from_micros(500);

/// A position in the log: an offset and the bytes written up to it (over all segments
/// since the log was opened).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    offset: u64,
    bytes: u64,
}

/// Zero-filling for a syncer thread to do (planned in `State::plan_fill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    /// The byte range `[start, end)` of the active segment.
    Active(u64, u64),
    /// A spare file of this many bytes for the next segment.
    Spare(u64),
}

/// Where the log's spare segment file stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spare {
    Absent,
    Filling,
    /// Zero-filled and synced: the next roll takes it.
    Ready,
    /// Preparing one failed once: not tried again.
    Off,
}

struct State {
    active: Arc<Segment>,
    written: Mark,
    /// The highest mark a running or finished sync claimed.
    claimed: Mark,
    durable: Mark,
    /// Syncs in progress.
    running: usize,
    /// When the newest sync in progress started (meaningful while `running > 0`).
    newest_sync_start: Instant,
    /// Syncer threads alive, and how many of them wait for work.
    threads: usize,
    waiting: usize,
    stopping: bool,
    handles: Vec<JoinHandle<()>>,
    /// How far the writer may have written in the active segment: the end of the batch it is
    /// writing, reserved before the write starts, so no zero-fill is ever planned over it.
    reserved_end: u64,
    /// A syncer is zero-filling this byte range of the active segment.
    filling: Option<(u64, u64)>,
    /// Zero-filling failed once (for example, no direct I/O on this file system): not tried
    /// again, appends simply extend the file.
    preallocation_off: bool,
    /// A fill planned by a sync the writer ran, which no syncer has started yet.
    fill_pending: Option<Fill>,
    spare: Spare,
    /// Recent `fdatasync` durations, smoothed (each sync moves it an eighth of the way).
    recent_sync: Duration,
}

impl State {
    fn has_work(&self) -> bool {
        self.written.offset > self.claimed.offset
    }

    /// How long until a sync may start on the unclaimed writes: zero when none is running or
    /// the newest running one is older than [`OVERLAP_AFTER`].
    fn overlap_delay(&self) -> Duration {
        if self.running == 0 {
            return Duration::ZERO;
        }
        OVERLAP_AFTER.saturating_sub(self.newest_sync_start.elapsed())
    }

    /// Whether the writer should run the sync of what it just wrote itself: no sync is running
    /// or waiting to start (so nothing could overlap with it anyway), and syncs are quick, so
    /// not writing meanwhile costs less than the hand-off to a syncer thread.
    fn sync_inline(&self, had_work: bool) -> bool {
        !had_work && self.running == 0 && self.recent_sync < INLINE_SYNC_BELOW
    }

    fn record_sync(&mut self, duration: Duration) {
        self.recent_sync = (self.recent_sync * 7 + duration) / 8;
    }

    fn quiet(&self) -> bool {
        self.running == 0 && !self.has_work() && self.filling.is_none()
    }

    /// Whether a write of `[start, start + len)` would touch the range being zero-filled.
    fn overlaps_filling(&self, start: u64, len: u64) -> bool {
        self.filling
            .is_some_and(|(from, to)| start < to && from < start + len)
    }

    /// Plans the next zero fill, if one is due and none runs, and claims it: the next stretch
    /// of the active segment if the writer is getting close to the end of its zero-filled
    /// space, else the spare segment file if the active segment is busy enough to want one.
    fn plan_fill(&mut self, preallocate: u64, segment_bytes: u64) -> Option<Fill> {
        if preallocate == 0
            || self.preallocation_off
            || self.filling.is_some()
            || self.spare == Spare::Filling
        {
            return None;
        }
        if let Some((start, end)) = self.next_stretch(preallocate, segment_bytes) {
            self.filling = Some((start, end));
            return Some(Fill::Active(start, end));
        }
        if self.spare == Spare::Absent && self.reserved_end >= segment_bytes / SPARE_AFTER_FRACTION
        {
            self.spare = Spare::Filling;
            return Some(Fill::Spare(align_up(segment_bytes)));
        }
        None
    }

    /// The next stretch of the active segment to zero-fill, if the writer is getting close to
    /// the end of the zero-filled space. A stretch is as long as the segment's data so far,
    /// between [`MIN_FILL_BYTES`] and `preallocate`, so a log that sees little traffic gets
    /// little zero-filled space. Never beyond the size at which the segment rolls.
    fn next_stretch(&self, preallocate: u64, segment_bytes: u64) -> Option<(u64, u64)> {
        let data_end = self.reserved_end;
        let stretch = align_up(data_end.clamp(MIN_FILL_BYTES, preallocate.max(MIN_FILL_BYTES)));
        let allocated = self.active.allocated();
        if allocated.saturating_sub(data_end) >= stretch / 2 {
            return None;
        }
        let start = align_up(allocated.max(data_end));
        let end = (start + stretch).min(align_up(segment_bytes));
        (start < end).then_some((start, end))
    }
}

pub(crate) struct Syncers {
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// Signalled when there is something to sync, or on stop.
    work: Condvar,
    /// Signalled when a sync finishes or a syncer exits.
    done: Condvar,
}

impl Syncers {
    pub(crate) fn new(shared: Arc<Shared>, active: Arc<Segment>, next_offset: u64) -> Arc<Syncers> {
        let reserved_end = active.size();
        let start = Mark {
            offset: next_offset,
            bytes: 0,
        };
        Arc::new(Syncers {
            shared,
            state: Mutex::new(State {
                active,
                written: start,
                claimed: start,
                durable: start,
                running: 0,
                newest_sync_start: Instant::now(),
                threads: 0,
                waiting: 0,
                stopping: false,
                handles: Vec::new(),
                reserved_end,
                filling: None,
                preallocation_off: false,
                fill_pending: None,
                spare: Spare::Absent,
                recent_sync: Duration::ZERO,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        })
    }

    /// Blocks until a batch of `len` bytes may be written at `start` in the active segment:
    /// without exceeding [`MAX_UNSYNCED_BYTES`] of unsynced data (a batch is always allowed
    /// once everything before it is durable), and not into a range being zero-filled. Then
    /// reserves the range, so no zero-fill is planned over it.
    pub(crate) fn wait_for_room(&self, start: u64, len: u64) -> Result<(), LogError> {
        let mut state = self.state.lock();
        loop {
            self.check_failure()?;
            let unsynced = state.written.bytes - state.durable.bytes;
            let room = unsynced == 0 || unsynced + len <= MAX_UNSYNCED_BYTES;
            if room && !state.overlaps_filling(start, len) {
                state.reserved_end = start + len;
                return Ok(());
            }
            self.done.wait(&mut state);
        }
    }

    /// Records that everything below `next_offset` is written (`len` more bytes) and gets it
    /// synced: by the calling writer thread itself when syncs are quick and none is running
    /// (one thread hand-off fewer on the way to durable), else by a syncer thread.
    pub(crate) fn written(self: &Arc<Self>, next_offset: u64, len: u64) -> Result<(), LogError> {
        let mut state = self.state.lock();
        let had_work = state.has_work();
        state.written = Mark {
            offset: next_offset,
            bytes: state.written.bytes + len,
        };
        if state.sync_inline(had_work) {
            let (claim, segment) = Self::claim(&mut state);
            drop(state);
            if let Some(fill) = self.sync(claim, &segment) {
                // Zero-filling takes milliseconds: a syncer thread does it, not the writer.
                let mut state = self.state.lock();
                state.fill_pending = Some(fill);
                self.rouse(&mut state)?;
            }
            return Ok(());
        }
        if !had_work {
            self.rouse(&mut state)?;
        }
        // Otherwise a syncer already knows there is work: it claims this with the rest, when
        // the running sync finishes or when it is old enough to overlap.
        Ok(())
    }

    /// Gets a syncer thread to look for work: wakes a waiting one, or starts one if fewer than
    /// [`MAX_SYNCERS`] are alive; otherwise a busy syncer finds the work when it finishes.
    fn rouse(self: &Arc<Self>, state: &mut State) -> Result<(), LogError> {
        if state.waiting > 0 {
            self.work.notify_one();
        } else if state.threads < MAX_SYNCERS {
            // Every syncer is busy: start another (it waits for its turn to overlap).
            let this = Arc::clone(self);
            let handle = thread::Builder::new()
                .name("ferry-log-sync".to_string())
                .spawn(move || this.run())
                .map_err(LogError::io(&self.shared.dir))?;
            state.threads += 1;
            // Dropping the handle of a syncer that exited (idle) releases its thread.
            state.handles.retain(|h| !h.is_finished());
            state.handles.push(handle);
        }
        Ok(())
    }

    /// Claims everything written for one sync.
    fn claim(state: &mut State) -> (Mark, Arc<Segment>) {
        let claim = state.written;
        state.claimed = claim;
        state.running += 1;
        state.newest_sync_start = Instant::now();
        (claim, Arc::clone(&state.active))
    }

    /// Waits until every written byte is durable and no sync is running. The writer calls
    /// this before it rolls or closes.
    pub(crate) fn wait_quiet(&self) -> Result<(), LogError> {
        let mut state = self.state.lock();
        loop {
            self.check_failure()?;
            if state.quiet() {
                return Ok(());
            }
            self.done.wait(&mut state);
        }
    }

    /// Points later syncs at the new active segment. Only call when quiet.
    pub(crate) fn set_active(&self, segment: Arc<Segment>) {
        let mut state = self.state.lock();
        debug_assert!(state.quiet());
        state.reserved_end = segment.size();
        state.active = segment;
    }

    /// Takes the spare segment file, if one is ready: the caller renames it into place as the
    /// next segment (see [`Segment::adopt_spare`]). Only call when quiet.
    pub(crate) fn take_spare(&self) -> bool {
        let mut state = self.state.lock();
        let ready = state.spare == Spare::Ready;
        if ready {
            state.spare = Spare::Absent;
        }
        ready
    }

    /// Stops and joins every syncer thread (after the syncs in progress).
    pub(crate) fn stop(&self) {
        let handles = {
            let mut state = self.state.lock();
            state.stopping = true;
            self.work.notify_all();
            std::mem::take(&mut state.handles)
        };
        for handle in handles {
            // A syncer that panicked already marked the log failed through its guard.
            let _ = handle.join();
        }
    }

    /// Zero-fills `[start, end)` of `segment` (claimed in `State::filling`). A failure only
    /// turns preallocation off: no entry lives in that range.
    fn zero_fill(&self, segment: &Segment, start: u64, end: u64) {
        let filled = segment.zero_fill(start, end);
        let mut state = self.state.lock();
        state.filling = None;
        if let Err(error) = filled {
            tracing::warn!(path = %segment.path().display(), %error, "cannot zero-fill ahead of the writer; appends extend the file instead");
            state.preallocation_off = true;
        }
        self.done.notify_all();
    }

    /// Writes the spare segment file (claimed in `State::spare`). A failure only means the
    /// next segments start empty and are zero-filled a stretch at a time.
    fn prepare_spare(&self, len: u64) {
        let dir = &self.shared.dir;
        let prepared = match self.reuse_recycled() {
            Ok(true) => Ok(()),
            Ok(false) => Segment::prepare_spare(dir, len),
            Err(error) => Err(error),
        };
        let mut state = self.state.lock();
        state.spare = match prepared {
            Ok(()) => Spare::Ready,
            Err(error) => {
                tracing::warn!(dir = %self.shared.dir.display(), %error, "cannot prepare the next segment ahead of the roll; new segments start empty");
                Spare::Off
            }
        };
        self.done.notify_all();
    }

    /// Makes the segment file retention left for recycling the spare, if there is one.
    fn reuse_recycled(&self) -> std::io::Result<bool> {
        let mut recycled = self.shared.recycled.lock();
        if *recycled == 0 {
            return Ok(false);
        }
        *recycled -= 1;
        Segment::spare_from_recycled(&self.shared.dir, *recycled)?;
        tracing::debug!(dir = %self.shared.dir.display(), "next segment prepared from a recycled one");
        Ok(true)
    }

    fn run_fill(&self, segment: &Segment, fill: Fill) {
        match fill {
            Fill::Active(start, end) => self.zero_fill(segment, start, end),
            Fill::Spare(len) => self.prepare_spare(len),
        }
    }

    fn check_failure(&self) -> Result<(), LogError> {
        match self.shared.progress.failure() {
            Some(reason) => Err(LogError::Poisoned(reason.to_string())),
            None => Ok(()),
        }
    }

    fn run(self: Arc<Self>) {
        let _exit = ExitGuard(Arc::clone(&self));
        loop {
            let mut state = self.state.lock();
            if state.stopping || self.shared.progress.failure().is_some() {
                return;
            }
            if let Some(fill) = state.fill_pending.take() {
                let segment = Arc::clone(&state.active);
                drop(state);
                self.run_fill(&segment, fill);
                continue;
            }
            if !state.has_work() {
                state.waiting += 1;
                let timed_out = self.work.wait_for(&mut state, IDLE_EXIT).timed_out();
                state.waiting -= 1;
                if timed_out && !state.has_work() && state.fill_pending.is_none() {
                    return;
                }
                continue;
            }
            let delay = state.overlap_delay();
            if !delay.is_zero() {
                // A young sync is running: it finishes soon and its syncer claims this, or
                // it turns out slow and this one starts beside it.
                state.waiting += 1;
                self.work.wait_for(&mut state, delay);
                state.waiting -= 1;
                continue;
            }
            let (claim, segment) = Self::claim(&mut state);
            drop(state);
            if let Some(fill) = self.sync(claim, &segment) {
                self.run_fill(&segment, fill);
            }
        }
    }

    /// Runs one `fdatasync` for `claim` and publishes it as durable (or fails the log). Returns
    /// the zero fill to do next, if one is due (claimed in the state).
    fn sync(&self, claim: Mark, segment: &Arc<Segment>) -> Option<Fill> {
        let start = Instant::now();
        let synced = segment.file().sync_data();
        let duration = start.elapsed();

        let mut state = self.state.lock();
        state.running -= 1;
        state.record_sync(duration);
        match synced {
            Ok(()) => {
                if claim.offset > state.durable.offset {
                    state.durable = claim;
                    self.shared.progress.set_durable(claim.offset);
                    self.shared.progress.wake();
                }
            }
            Err(error) => {
                let error = LogError::io(segment.path())(error);
                tracing::error!(dir = %self.shared.dir.display(), %error, "fdatasync failed; the log refuses further appends");
                self.shared.progress.fail(error.to_string());
            }
        }
        let config = &self.shared.config;
        let fill = state.plan_fill(config.preallocate_bytes, config.segment_bytes);
        self.done.notify_all();
        drop(state);
        // Reported before any zero-fill, so the sync is recorded right after its waiters
        // were woken, not milliseconds later.
        if let Some(observer) = &self.shared.config.on_sync {
            observer(SyncStats {
                duration,
                bytes: 0,
                entries: 0,
            });
        }
        fill
    }
}

/// Keeps the thread count true however a syncer exits, and marks the log failed on a panic.
struct ExitGuard(Arc<Syncers>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let syncers = &self.0;
        if thread::panicking() {
            syncers
                .shared
                .progress
                .fail("a sync thread panicked".to_string());
        }
        syncers.state.lock().threads -= 1;
        syncers.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(running: usize, newest_sync_start: Instant) -> State {
        // The tempdir may go: the open file stays usable.
        let dir = tempfile::tempdir().unwrap();
        let segment = Arc::new(Segment::create(dir.path(), 0, 4096).unwrap());
        State {
            active: segment,
            written: Mark::default(),
            claimed: Mark::default(),
            durable: Mark::default(),
            running,
            newest_sync_start,
            threads: 0,
            waiting: 0,
            stopping: false,
            handles: Vec::new(),
            reserved_end: 0,
            filling: None,
            preallocation_off: false,
            fill_pending: None,
            spare: Spare::Absent,
            recent_sync: Duration::ZERO,
        }
    }

    #[test]
    fn fills_run_one_at_a_time_and_a_spare_is_planned_once_an_eighth_is_written() {
        const SEGMENT: u64 = 1 << 20;
        const PREALLOCATE: u64 = 64 << 10;
        let mut state = state_with(0, Instant::now());
        assert_eq!(
            state.plan_fill(PREALLOCATE, SEGMENT),
            Some(Fill::Active(0, PREALLOCATE)),
            "a new segment gets its first stretch"
        );
        assert_eq!(
            state.plan_fill(PREALLOCATE, SEGMENT),
            None,
            "one is running"
        );
        state.filling = None;
        state.active.set_allocated(SEGMENT);
        state.reserved_end = SEGMENT / SPARE_AFTER_FRACTION - 1;
        assert_eq!(
            state.plan_fill(PREALLOCATE, SEGMENT),
            None,
            "too quiet for a spare"
        );
        state.reserved_end = SEGMENT / SPARE_AFTER_FRACTION;
        assert_eq!(
            state.plan_fill(PREALLOCATE, SEGMENT),
            Some(Fill::Spare(SEGMENT))
        );
        assert_eq!(state.spare, Spare::Filling);
        assert_eq!(
            state.plan_fill(PREALLOCATE, SEGMENT),
            None,
            "the spare is being filled"
        );
        state.spare = Spare::Ready;
        assert_eq!(
            state.plan_fill(PREALLOCATE, SEGMENT),
            None,
            "one spare at a time"
        );
        assert_eq!(state.plan_fill(0, SEGMENT), None);
    }

    #[test]
    fn a_sync_overlaps_a_running_one_only_once_that_one_is_slow() {
        let mut state = state_with(0, Instant::now());
        assert_eq!(state.overlap_delay(), Duration::ZERO, "nothing running");
        state.running = 1;
        state.newest_sync_start = Instant::now();
        let young = state.overlap_delay();
        assert!(
            young > Duration::ZERO && young <= OVERLAP_AFTER,
            "{young:?}"
        );
        state.running = 2;
        state.newest_sync_start = Instant::now() - OVERLAP_AFTER - Duration::from_micros(1);
        assert_eq!(
            state.overlap_delay(),
            Duration::ZERO,
            "the newest sync is slow"
        );
    }

    #[test]
    fn the_writer_syncs_by_itself_only_when_no_sync_runs_or_waits_and_syncs_are_quick() {
        let mut state = state_with(0, Instant::now());
        assert!(state.sync_inline(false), "idle, no sync measured yet");
        assert!(
            !state.sync_inline(true),
            "earlier writes wait for a syncer already"
        );
        state.running = 1;
        assert!(!state.sync_inline(false), "a sync is running");
        state.running = 0;
        for _ in 0..20 {
            state.record_sync(Duration::from_millis(2));
        }
        assert!(
            !state.sync_inline(false),
            "slow syncs are left to syncer threads, which can overlap them"
        );
        for _ in 0..40 {
            state.record_sync(Duration::from_micros(100));
        }
        assert!(state.sync_inline(false), "quick again");
    }
}
