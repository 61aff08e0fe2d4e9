//! Memory and file positions aligned for direct I/O (`O_DIRECT`), which moves data between a
//! buffer and the disk without the page cache, and so needs page-aligned buffers, offsets and
//! lengths.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Alignment of direct I/O offsets, lengths and buffers.
pub(crate) const DIRECT_IO_ALIGN: u64 = 4096;

pub(crate) fn align_down(n: u64) -> u64 {
    n / DIRECT_IO_ALIGN * DIRECT_IO_ALIGN
}

pub(crate) fn align_up(n: u64) -> u64 {
    n.div_ceil(DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN
}

/// A zero-initialised buffer aligned to [`DIRECT_IO_ALIGN`], whose capacity grows on demand.
pub(crate) struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: the buffer owns its allocation exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// `len` bytes (rounded up to whole pages, at least one), all zero.
    pub(crate) fn zeroed(len: usize) -> AlignedBuf {
        let size = align_up(len.max(1) as u64) as usize;
        let layout = std::alloc::Layout::from_size_align(size, DIRECT_IO_ALIGN as usize)
            .expect("a valid layout");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr =
            std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, layout }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Makes the buffer at least `len` bytes long. Growing loses the contents.
    pub(crate) fn reserve(&mut self, len: usize) {
        if len > self.capacity() {
            *self = AlignedBuf::zeroed(len.max(2 * self.capacity()));
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `layout.size()` initialised bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

thread_local! {
    /// A buffer kept for the next [`AlignedBuf::take`] on this thread.
    static SPARE: std::cell::Cell<Option<AlignedBuf>> = const { std::cell::Cell::new(None) };
}

impl AlignedBuf {
    /// A buffer of at least `len` bytes: this thread's spare one if it has one (reading
    /// into memory already mapped costs no page faults), else a new one. Its contents are
    /// whatever was left in it.
    pub(crate) fn take(len: usize) -> AlignedBuf {
        let mut buf = SPARE
            .with(|s| s.take())
            .unwrap_or_else(|| AlignedBuf::zeroed(len));
        buf.reserve(len);
        buf
    }

    /// Keeps `self` as this thread's spare buffer (the larger of the two is kept).
    pub(crate) fn give_back(self) {
        SPARE.with(|s| {
            let spare = s.take();
            s.set(Some(match spare {
                Some(other) if other.capacity() > self.capacity() => other,
                _ => self,
            }));
        });
    }
}

/// Fills `buf` from `file` at `at` (both aligned) with direct reads until at least `need` bytes
/// are in; the file may end after those (a direct read returns a short count only at the end).
pub(crate) fn read_direct(file: &File, buf: &mut [u8], at: u64, need: usize) -> io::Result<()> {
    debug_assert!(
        at.is_multiple_of(DIRECT_IO_ALIGN) && (buf.len() as u64).is_multiple_of(DIRECT_IO_ALIGN)
    );
    let mut done = 0;
    while done < need {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) if done + n < need && !(n as u64).is_multiple_of(DIRECT_IO_ALIGN) => {
                return Err(io::ErrorKind::UnexpectedEof.into())
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_arithmetic() {
        assert_eq!(align_down(0), 0);
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4097), 4096);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        let mut b = AlignedBuf::zeroed(10);
        assert_eq!(b.capacity(), 4096);
        assert_eq!(b.as_slice().as_ptr() as usize % 4096, 0);
        b.reserve(5000);
        assert_eq!(b.capacity(), 8192);
        assert!(b.as_slice().iter().all(|&x| x == 0));
    }
}
