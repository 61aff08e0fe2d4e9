//! Sequential frame reading over a segment file with few `pread` calls.
//!
//! A cursor reads ahead in chunks (`readahead` bytes, or one whole frame if larger), parses
//! headers from its buffer and verifies CRCs. It never reads at or beyond `end`, which for
//! a live segment is the number of bytes the writer has finished writing.
//!
//! On a file opened for direct I/O the cursor reads whole aligned pages into an aligned buffer.
//! The last page may be being rewritten by the writer meanwhile (it always rewrites the partial
//! page it ends in, see `writer.rs`); the bytes before `end` are the same in the old and the
//! new page, and the cursor never looks past `end`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use crate::aligned::{align_down, align_up, read_direct, AlignedBuf};
use crate::entry::StoredEntry;
use crate::error::LogError;
use crate::frame::{FrameHeader, HEADER_BYTES};

/// Why the cursor stopped. `Bad` is left for the caller to classify: recovery may call it a
/// torn tail, a read always calls it corruption.
#[derive(Debug)]
pub(crate) enum CursorError {
    Io(io::Error),
    Bad { position: u64, reason: String },
}

impl CursorError {
    pub(crate) fn into_log_error(self, path: &Path) -> LogError {
        match self {
            CursorError::Io(source) => LogError::Io {
                path: path.to_path_buf(),
                source,
            },
            CursorError::Bad { position, reason } => LogError::corrupt(path, position, reason),
        }
    }
}

impl From<io::Error> for CursorError {
    fn from(e: io::Error) -> Self {
        CursorError::Io(e)
    }
}

pub(crate) struct FrameCursor<'a> {
    file: &'a File,
    /// Position of the next frame.
    pos: u64,
    end: u64,
    buf: Buffer,
    /// File position of the buffer's first byte.
    buf_start: u64,
    /// Bytes of the buffer that hold file data.
    buf_len: usize,
    readahead: usize,
}

/// The cursor's read buffer: aligned for a file opened with `O_DIRECT`.
enum Buffer {
    Plain(Vec<u8>),
    /// Taken from the thread's spare on first use, given back when the cursor drops.
    Direct(Option<AlignedBuf>),
}

impl Drop for FrameCursor<'_> {
    fn drop(&mut self) {
        if let Buffer::Direct(buf) = &mut self.buf {
            if let Some(buf) = buf.take() {
                buf.give_back();
            }
        }
    }
}

impl<'a> FrameCursor<'a> {
    /// `direct`: `file` was opened with `O_DIRECT`.
    pub(crate) fn new(
        file: &'a File,
        pos: u64,
        end: u64,
        readahead: usize,
        direct: bool,
    ) -> FrameCursor<'a> {
        FrameCursor {
            file,
            pos,
            end,
            buf: if direct {
                Buffer::Direct(None)
            } else {
                Buffer::Plain(Vec::new())
            },
            buf_start: 0,
            buf_len: 0,
            readahead: readahead.max(HEADER_BYTES),
        }
    }

    /// Position of the next frame.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// The header of the next frame, `None` at `end`. Checks that the whole frame lies
    /// before `end`, but not its CRC.
    pub(crate) fn next_header(&mut self) -> Result<Option<FrameHeader>, CursorError> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(None);
        }
        if left < HEADER_BYTES as u64 {
            return Err(self.bad(format!("truncated frame header: only {left} bytes left")));
        }
        let mut raw = [0; HEADER_BYTES];
        raw.copy_from_slice(self.bytes(self.pos, HEADER_BYTES)?);
        let header = FrameHeader::parse(&raw).map_err(|reason| self.bad(reason))?;
        if header.frame_len() > left {
            return Err(self.bad(format!(
                "frame of {} bytes is cut short: only {left} bytes left",
                header.frame_len()
            )));
        }
        Ok(Some(header))
    }

    /// Moves past the frame whose header was just returned, without reading its payload.
    pub(crate) fn skip(&mut self, header: &FrameHeader) {
        self.pos += header.frame_len();
    }

    /// Verifies the CRC of the frame whose header was just returned and moves past it.
    pub(crate) fn verify(&mut self, header: &FrameHeader) -> Result<(), CursorError> {
        self.checked_frame(header)?;
        self.pos += header.frame_len();
        Ok(())
    }

    /// Verifies and returns the entry whose header was just returned, and moves past it.
    pub(crate) fn read_entry(&mut self, header: &FrameHeader) -> Result<StoredEntry, CursorError> {
        let payload = Bytes::copy_from_slice(&self.checked_frame(header)?[HEADER_BYTES..]);
        self.pos += header.frame_len();
        Ok(StoredEntry {
            offset: header.offset,
            offset_count: header.offset_count,
            timestamp_ms: header.timestamp_ms,
            payload,
        })
    }

    fn checked_frame(&mut self, header: &FrameHeader) -> Result<&[u8], CursorError> {
        let pos = self.pos;
        let frame = self.bytes(pos, header.frame_len() as usize)?;
        match header.verify(frame) {
            Ok(()) => Ok(frame),
            Err(reason) => Err(CursorError::Bad {
                position: pos,
                reason,
            }),
        }
    }

    pub(crate) fn bad(&self, reason: impl Into<String>) -> CursorError {
        CursorError::Bad {
            position: self.pos,
            reason: reason.into(),
        }
    }

    /// `len` bytes at `at`, from the buffer or from one `pread` that refills it.
    fn bytes(&mut self, at: u64, len: usize) -> Result<&[u8], CursorError> {
        debug_assert!(at + len as u64 <= self.end);
        let buf_end = self.buf_start + self.buf_len as u64;
        if at < self.buf_start || at + len as u64 > buf_end {
            let want = (len.max(self.readahead) as u64).min(self.end - at) as usize;
            match &mut self.buf {
                Buffer::Plain(buf) => {
                    buf.clear();
                    buf.resize(want, 0);
                    self.file.read_exact_at(buf, at)?;
                    self.buf_start = at;
                    self.buf_len = want;
                }
                Buffer::Direct(slot) => {
                    let start = align_down(at);
                    let need = (at + want as u64 - start) as usize;
                    let span = align_up(at + want as u64) - start;
                    let buf = slot.get_or_insert_with(|| AlignedBuf::take(span as usize));
                    buf.reserve(span as usize);
                    read_direct(
                        self.file,
                        &mut buf.as_mut_slice()[..span as usize],
                        start,
                        need,
                    )?;
                    self.buf_start = start;
                    self.buf_len = need;
                }
            }
        }
        let start = (at - self.buf_start) as usize;
        let data = match &self.buf {
            Buffer::Plain(buf) => &buf[..],
            Buffer::Direct(buf) => buf.as_ref().map_or(&[][..], AlignedBuf::as_slice),
        };
        Ok(&data[start..start + len])
    }
}
