//! Watermarks published by the writer and syncer threads, and waiting on them.
//!
//! Two offsets are published: `written` (every entry below it is in the file and readable)
//! and `durable` (every entry below it is durable under the configured policy).
//!
//! Async waiters register with the offset they wait for, and a publication wakes exactly the
//! waiters it satisfies: with several syncs in flight, a sync that covers only the older half
//! of the waiting appenders does not wake the younger half just to have them sleep again.
//! Blocking waiters (rare: reads of not-yet-written entries, maintenance) share one condvar
//! and re-check after each publication.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::error::LogError;

#[derive(Debug)]
pub(crate) struct Progress {
    written: AtomicU64,
    durable: AtomicU64,
    /// Set once when a write or sync fails; the log is poisoned from then on.
    failure: OnceLock<String>,
    /// Set when the writer thread has exited (closed or failed).
    stopped: AtomicBool,
    waiters: Mutex<Waiters>,
    lock: Mutex<()>,
    cond: Condvar,
}

/// Registered async waiters, per watermark, by (offset waited for, registration id).
#[derive(Debug, Default)]
struct Waiters {
    next_id: u64,
    by_mark: [BTreeMap<(u64, u64), Waker>; 2],
}

/// Which watermark a waiter is waiting for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Watermark {
    Written,
    Durable,
}

impl Watermark {
    fn index(self) -> usize {
        match self {
            Watermark::Written => 0,
            Watermark::Durable => 1,
        }
    }
}

impl Progress {
    pub(crate) fn new(next_offset: u64) -> Progress {
        Progress {
            written: AtomicU64::new(next_offset),
            durable: AtomicU64::new(next_offset),
            failure: OnceLock::new(),
            stopped: AtomicBool::new(false),
            waiters: Mutex::new(Waiters::default()),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Publishes a new `written` watermark. Call [`Progress::wake`] afterwards.
    pub(crate) fn set_written(&self, offset: u64) {
        debug_assert!(offset >= self.written());
        self.written.store(offset, Ordering::Release);
    }

    /// Publishes a new `durable` watermark. Call [`Progress::wake`] afterwards.
    pub(crate) fn set_durable(&self, offset: u64) {
        debug_assert!(offset >= self.durable() && offset <= self.written());
        self.durable.store(offset, Ordering::Release);
    }

    pub(crate) fn fail(&self, reason: String) {
        // Only the first failure is kept: it is the root cause.
        let _ = self.failure.set(reason);
        self.wake();
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake();
    }

    /// Wakes the async waiters whose offsets the watermarks now reach (all of them once the
    /// log failed or stopped) and every blocking waiter.
    pub(crate) fn wake(&self) {
        let finished = self.failure().is_some() || self.stopped.load(Ordering::Acquire);
        let reached = [self.written(), self.durable()];
        let mut ready = Vec::new();
        {
            // Waiters check under this lock, so none checks before and sleeps after this.
            let mut waiters = self.waiters.lock();
            for (map, reached) in waiters.by_mark.iter_mut().zip(reached) {
                if finished {
                    ready.extend(std::mem::take(map).into_values());
                } else if map.first_key_value().is_some_and(|(k, _)| k.0 <= reached) {
                    let later = map.split_off(&(reached + 1, 0));
                    ready.extend(std::mem::replace(map, later).into_values());
                }
            }
        }
        for waker in ready {
            waker.wake();
        }
        // Taking the lock orders this wake-up after any blocking waiter's check-then-wait.
        let _guard = self.lock.lock();
        self.cond.notify_all();
    }

    /// `Some` once waiting for `offset` on `mark` is over, successfully or not.
    fn check(&self, mark: Watermark, offset: u64) -> Option<Result<(), LogError>> {
        let reached = match mark {
            Watermark::Written => self.written(),
            Watermark::Durable => self.durable(),
        };
        if reached >= offset {
            Some(Ok(()))
        } else if let Some(reason) = self.failure() {
            Some(Err(LogError::Poisoned(reason.to_string())))
        } else if self.stopped.load(Ordering::Acquire) {
            Some(Err(LogError::Closed))
        } else {
            None
        }
    }

    /// Waits until `mark` reaches `offset`, blocking the thread.
    pub(crate) fn wait_blocking(&self, mark: Watermark, offset: u64) -> Result<(), LogError> {
        if let Some(done) = self.check(mark, offset) {
            return done;
        }
        let mut guard = self.lock.lock();
        loop {
            if let Some(done) = self.check(mark, offset) {
                return done;
            }
            self.cond.wait(&mut guard);
        }
    }

    /// Waits until `mark` reaches `offset` without blocking the thread.
    pub(crate) fn wait(&self, mark: Watermark, offset: u64) -> Wait<'_> {
        Wait {
            progress: self,
            mark,
            offset,
            id: None,
        }
    }
}

/// The future of [`Progress::wait`]; deregisters itself when dropped.
pub(crate) struct Wait<'a> {
    progress: &'a Progress,
    mark: Watermark,
    offset: u64,
    /// Registration id while a waker is (or may be) registered.
    id: Option<u64>,
}

impl Future for Wait<'_> {
    type Output = Result<(), LogError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let progress = self.progress;
        if let Some(done) = progress.check(self.mark, self.offset) {
            return Poll::Ready(done);
        }
        let mut waiters = progress.waiters.lock();
        // Again under the lock: a publication in between either is seen here or wakes us.
        if let Some(done) = progress.check(self.mark, self.offset) {
            return Poll::Ready(done);
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                waiters.next_id += 1;
                waiters.next_id
            }
        };
        waiters.by_mark[self.mark.index()].insert((self.offset, id), cx.waker().clone());
        drop(waiters);
        self.id = Some(id);
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.progress.waiters.lock().by_mark[self.mark.index()].remove(&(self.offset, id));
        }
    }
}
