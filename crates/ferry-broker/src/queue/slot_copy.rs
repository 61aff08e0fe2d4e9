//! The buffer a checkpoint copies the queue's message slots into while it holds the queue's
//! lock (see `Queue::checkpoint`).
//!
//! Its memory is mapped from the OS for that one checkpoint and unmapped when the copy is
//! dropped, so the 40 bytes per message it takes (400 MB for 10 million messages) go back to
//! the OS as soon as the checkpoint is written. Allocated from the heap instead, they stayed
//! resident after it: with 10 million queued messages the process held 618 MiB before its
//! first checkpoint and 1,053 MiB after (`docs/benchmarks.md`). The mapping is also faulted in
//! when it is made (`MAP_POPULATE`), before the lock is taken, so copying under the lock never
//! waits for a page fault.

use std::io;
use std::ptr::NonNull;

use super::state::Meta;

/// A fixed-capacity buffer of [`Meta`]s in memory of its own.
pub struct SlotCopy {
    ptr: NonNull<Meta>,
    capacity: usize,
    len: usize,
}

// SAFETY: a `SlotCopy` owns its mapping exclusively, as a `Vec<Meta>` owns its allocation, and
// `Meta` is plain data.
unsafe impl Send for SlotCopy {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for SlotCopy {}

impl SlotCopy {
    /// Maps room for `capacity` slots (at least one), faulted in.
    pub fn with_capacity(capacity: usize) -> io::Result<SlotCopy> {
        let capacity = capacity.max(1);
        let bytes = capacity
            .checked_mul(std::mem::size_of::<Meta>())
            .ok_or_else(|| io::Error::other("checkpoint copy too large"))?;
        // SAFETY: a new private anonymous mapping at an address of the kernel's choosing; it
        // aliases nothing. The result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<Meta>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(SlotCopy {
            ptr,
            capacity,
            len: 0,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends `slots`. Panics if they do not fit (callers check the capacity first).
    pub fn extend_from_slice(&mut self, slots: &[Meta]) {
        assert!(
            slots.len() <= self.capacity - self.len,
            "checkpoint copy over capacity"
        );
        // SAFETY: the destination range `len .. len + slots.len()` lies inside the mapping
        // (checked above) and is aligned for `Meta` (the mapping is page-aligned and slots are
        // `size_of::<Meta>()` apart); `slots` lives elsewhere, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                slots.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                slots.len(),
            );
        }
        self.len += slots.len();
    }

    pub fn as_slice(&self) -> &[Meta] {
        // SAFETY: the first `len` slots were written from valid `Meta`s by
        // `extend_from_slice`, and the mapping lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SlotCopy {
    fn drop(&mut self) {
        let bytes = self.capacity * std::mem::size_of::<Meta>();
        // SAFETY: unmaps exactly the mapping made in `with_capacity`, which nothing borrows
        // any more (`as_slice` borrows `self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_copied_in_up_to_its_capacity() {
        let slots: Vec<Meta> = (0..1000)
            .map(|i| Meta {
                loc: i,
                receive_count: i as u32 * 3,
                ..Meta::default()
            })
            .collect();
        let mut copy = SlotCopy::with_capacity(1500).unwrap();
        copy.extend_from_slice(&slots[..400]);
        copy.extend_from_slice(&slots[400..]);
        assert_eq!(copy.as_slice(), &slots[..]);
        copy.extend_from_slice(&slots[..500]);
        assert_eq!(copy.as_slice().len(), 1500);
        let full = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            copy.extend_from_slice(&slots[..1]);
        }));
        assert!(full.is_err(), "over capacity");
        assert!(SlotCopy::with_capacity(0).unwrap().as_slice().is_empty());
    }
}
