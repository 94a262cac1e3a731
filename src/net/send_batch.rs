//! The sends of one flush pass, for the core's ring (`--ws-send auto`, the default, or `ring`): which socket gets which
//! bytes, built by the flusher (`net/writer.rs`) and submitted by [`RecvRing::send_batch`].
//!
//! Owns: the bytes' keep-alive (the frames, by `Rc`, and copies of corked frames), and the
//! iovecs and message headers the kernel reads, built once nothing more is added so their
//! pointers stay put until every send completed. Does not own: the sockets, or the ring.
//!
//! [`RecvRing::send_batch`]: super::recv_ring::RecvRing::send_batch

use std::{os::fd::RawFd, rc::Rc};

/// The sends of one flush pass, built by the flusher and handed to [`RecvRing::send_batch`]:
/// per send a socket and its bytes, which are frames kept alive here (no copy) or bytes copied
/// into the batch's own buffer (several small frames corked into one run). Reused from pass to
/// pass; nothing in it is freed between passes.
#[derive(Default)]
pub struct SendBatch {
    pub(super) sends: Vec<SendReq>,
    parts: Vec<Part>,
    /// The frames that parts point into, kept until the sends completed.
    frames: Vec<Rc<[u8]>>,
    /// Bytes copied for corked parts.
    copied: Vec<u8>,
    /// Built by `materialise` once nothing more is added, so their pointers stay valid.
    pub(super) iovs: Vec<libc::iovec>,
    pub(super) hdrs: Vec<libc::msghdr>,
}

pub(super) struct SendReq {
    pub(super) fd: RawFd,
    /// Its range in `parts` (and, once materialised, in `iovs`).
    pub(super) parts: (usize, usize),
    pub(super) result: Option<i32>,
}

enum Part {
    /// `frames[frame][from..]`.
    Frame { frame: usize, from: usize },
    /// `copied[at..at + len]`.
    Copied { at: usize, len: usize },
}

impl SendBatch {
    pub fn clear(&mut self) {
        self.sends.clear();
        self.parts.clear();
        self.frames.clear();
        self.copied.clear();
        self.iovs.clear();
        self.hdrs.clear();
    }

    pub fn len(&self) -> usize {
        self.sends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sends.is_empty()
    }

    /// Bytes copied into the batch so far (the flusher bounds a batch by it).
    pub fn copied_bytes(&self) -> usize {
        self.copied.len()
    }

    /// Starts the next send, on `fd` (open until the batch was sent). Its bytes are the parts
    /// added until the next `begin`.
    pub fn begin(&mut self, fd: RawFd) {
        let at = self.parts.len();
        self.sends.push(SendReq {
            fd,
            parts: (at, at),
            result: None,
        });
    }

    /// Adds `frame[from..]` to the current send, without copying.
    pub fn add_frame(&mut self, frame: &Rc<[u8]>, from: usize) {
        self.frames.push(frame.clone());
        self.parts.push(Part::Frame {
            frame: self.frames.len() - 1,
            from,
        });
        self.end_part();
    }

    /// Adds a copy of `bytes` to the current send, joined to the part before if that was a
    /// copy too (so corked frames go as one run).
    pub fn add_copy(&mut self, bytes: &[u8]) {
        let at = self.copied.len();
        self.copied.extend_from_slice(bytes);
        let first = self.sends.last().map_or(0, |s| s.parts.0);
        if self.parts.len() > first {
            if let Some(Part::Copied { len, .. }) = self.parts.last_mut() {
                *len += bytes.len();
                return;
            }
        }
        self.parts.push(Part::Copied {
            at,
            len: bytes.len(),
        });
        self.end_part();
    }

    fn end_part(&mut self) {
        let n = self.parts.len();
        if let Some(s) = self.sends.last_mut() {
            s.parts.1 = n;
        }
    }

    /// Send `i`'s outcome: bytes sent, or minus an errno (`None` before it was sent).
    pub fn result(&self, i: usize) -> Option<i32> {
        self.sends.get(i).and_then(|s| s.result)
    }

    /// Turns the parts into iovecs and message headers; nothing may be added afterwards.
    pub(super) fn materialise(&mut self) {
        self.iovs.clear();
        self.hdrs.clear();
        self.iovs.reserve(self.parts.len());
        self.hdrs.reserve(self.sends.len());
        for part in &self.parts {
            let bytes: &[u8] = match *part {
                Part::Frame { frame, from } => &self.frames[frame][from..],
                Part::Copied { at, len } => &self.copied[at..at + len],
            };
            self.iovs.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
        for send in &self.sends {
            // SAFETY: an all-zero msghdr is a valid empty one (no name, no control data).
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_iov = self.iovs[send.parts.0..].as_ptr() as *mut libc::iovec;
            hdr.msg_iovlen = send.parts.1 - send.parts.0;
            self.hdrs.push(hdr);
        }
    }
}
