//! Watermarks published by the writer thread, and waiting on them.
//!
//! The writer publishes two offsets: `written` (every entry below it is in the file and
//! readable) and `durable` (every entry below it is durable under the configured policy).
//! Waiters do not register per offset: after each batch the writer wakes everyone once, and
//! each waiter re-checks the watermark it cares about. That is one wake-up per batch however
//! many appenders share it, which is what group commit needs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

use crate::error::LogError;

#[derive(Debug)]
pub(crate) struct Progress {
    written: AtomicU64,
    durable: AtomicU64,
    /// Set once when a write or sync fails; the log is poisoned from then on.
    failure: OnceLock<String>,
    /// Set when the writer thread has exited (closed or failed).
    stopped: AtomicBool,
    notify: Notify,
    lock: Mutex<()>,
    cond: Condvar,
}

/// Which watermark a waiter is waiting for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Watermark {
    Written,
    Durable,
}

impl Progress {
    pub(crate) fn new(next_offset: u64) -> Progress {
        Progress {
            written: AtomicU64::new(next_offset),
            durable: AtomicU64::new(next_offset),
            failure: OnceLock::new(),
            stopped: AtomicBool::new(false),
            notify: Notify::new(),
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

    /// Wakes every waiter so it re-checks its watermark.
    pub(crate) fn wake(&self) {
        self.notify.notify_waiters();
        // Taking the lock orders this wake-up after any waiter's check-then-wait.
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
    pub(crate) async fn wait(&self, mark: Watermark, offset: u64) -> Result<(), LogError> {
        loop {
            let mut notified = std::pin::pin!(self.notify.notified());
            // Register before checking, so a wake-up between the check and the await is kept.
            notified.as_mut().enable();
            if let Some(done) = self.check(mark, offset) {
                return done;
            }
            notified.await;
        }
    }
}
