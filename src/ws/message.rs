//! The streaming decoder: client bytes in, complete messages and control frames out.
//!
//! Owns: the message-level rules of RFC 6455 (fragmentation 5.4, UTF-8 for text 8.1, the message
//! size limit, the Close payload 5.5.1) and the state that lets a frame arrive in any number of
//! pieces. Does not own: header-level rules (`frame::FrameHeader::parse`), answering pings or
//! closes, or any IO.
//!
//! # Data path
//!
//! `feed` takes every byte it is given; the caller never keeps leftovers. Per frame:
//!
//! - header: parsed straight from the input when it is all there, otherwise the piece is copied
//!   into `hdr` (at most 14 bytes) and completed by the next `feed`.
//! - fast path: if the whole payload of a control frame or of an unfragmented data frame is in
//!   the input, it is unmasked in place and handed out as a slice of the caller's buffer. No copy,
//!   no allocation. This is the common case for small chat-sized messages.
//! - slow path: otherwise each piece is unmasked (with its offset into the payload) and appended
//!   to `msg` (data) or `ctrl` (control), and a text message's new bytes are UTF-8 checked right
//!   away, so an invalid byte fails the connection before the rest of the frame arrives.
//!
//! Everything the slow path keeps (a split header, a frame or message in progress) lives in one
//! box, [`Partial`], allocated when a frame is split and freed when `feed` returns between
//! messages. An idle connection's decoder is a few scalars: there is one per open WebSocket.
//!
//! Compressed messages (permessage-deflate, RSV1 on the first frame): the payload goes through
//! the same two paths, then is inflated once, whole, by the core's inflater
//! (`deflate::inflate`), which stops the moment the output passes `max_message_size`. Text is
//! UTF-8 checked after inflating. On the wire a compressed message may be a little over
//! `max_message_size` (deflate's worst case for incompressible data, [`compressed_wire_limit`]).
//!
//! The first error poisons the decoder: `feed` keeps returning it, and the caller closes with
//! `err.close_code()`.

use super::close;
use super::deflate;
use super::error::WsError;
use super::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use super::mask::unmask;

/// A complete message or control frame. Borrows either the caller's input buffer (fast path) or
/// the decoder's reassembly buffer, so it only lives for the duration of the callback.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A complete text message, already validated as UTF-8.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; the caller should answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (solicited or not; unsolicited pongs are a valid heartbeat).
    Pong(&'a [u8]),
    /// A close frame. `code` is `None` for an empty payload (which means 1005, "no status",
    /// locally). The code has been checked to be valid on the wire and the reason to be UTF-8.
    /// Nothing after it is decoded.
    Close { code: Option<u16>, reason: &'a str },
}

/// The frame whose payload is being read on the slow path.
#[derive(Copy, Clone, Debug)]
struct PartialFrame {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes already unmasked, mod 4: where in the key the next byte starts.
    mask_offset: u8,
    /// Payload bytes not yet received. Fits `usize`: control frames are ≤125 bytes and data
    /// frames were checked against `max_message_size` before this was created.
    remaining: usize,
}

/// Server-side streaming WebSocket decoder for one connection. See the module docs.
///
/// Idle (between messages, no header split), it owns no heap memory.
#[derive(Debug)]
pub struct Decoder {
    /// Limit on the sum of a message's fragment payloads. Fixed per connection.
    max_message_size: usize,
    /// The slow path's state; `None` between messages (see the module docs).
    partial: Option<Box<Partial>>,
    /// The first protocol error; `feed` returns it again if called after it.
    failed: Option<WsError>,
    /// A Close was delivered: the rest of the stream is ignored (RFC 6455 5.5.1: after a Close
    /// the peer sends no more data frames).
    closed: bool,
    /// The connection negotiated permessage-deflate: RSV1 may mark a compressed message.
    deflate: bool,
}

/// What the decoder keeps of a frame or message that arrived in pieces.
#[derive(Debug, Default)]
struct Partial {
    /// The data message being reassembled on the slow path.
    /// INVARIANT: empty whenever `message` is `None`.
    msg: Vec<u8>,
    /// A control frame's payload that arrived split across feeds (≤125 bytes).
    ctrl: Vec<u8>,
    /// For a text message: `msg[..utf8_checked]` is known valid UTF-8 ending on a char boundary.
    /// `msg[utf8_checked..]` is an incomplete sequence (≤3 bytes) waiting for its continuation.
    /// This is the UTF-8 carry: keeping it as an index into `msg` avoids copying the carry.
    utf8_checked: usize,
    /// The frame whose payload is being read; `None` while between frames.
    frame: Option<PartialFrame>,
    /// Opcode (Text or Binary) of the data message in progress on the slow path, fragmented or
    /// a single frame split across feeds. `Some` means a new Text/Binary frame is an error.
    message: Option<OpCode>,
    /// A header that arrived split across feeds. Only the first `hdr_len` bytes are meaningful.
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: u8,
    /// The data message in progress on the slow path is compressed (its first frame had RSV1).
    compressed: bool,
}

impl Partial {
    /// Nothing in progress: the box can go.
    fn is_idle(&self) -> bool {
        self.hdr_len == 0 && self.frame.is_none() && self.message.is_none()
    }

    /// Checks the text bytes appended since the last check. `Utf8Error::error_len() == None`
    /// means the input merely ends inside a sequence whose bytes so far are a valid prefix; any
    /// other error is definitely invalid already, whatever follows.
    fn check_utf8_so_far(&mut self) -> Result<(), WsError> {
        match std::str::from_utf8(&self.msg[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.msg.len(),
            Err(e) if e.error_len().is_none() => self.utf8_checked += e.valid_up_to(),
            Err(_) => return Err(WsError::InvalidUtf8),
        }
        Ok(())
    }
}

/// The most wire bytes a compressed message may take when its inflated size may be `max`:
/// deflate's stored blocks add 5 bytes per 64 KiB to incompressible data, plus a little at the
/// ends; this allows more than that and not much else.
pub const fn compressed_wire_limit(max: usize) -> usize {
    max.saturating_add(max / 1024 + 64)
}

// One decoder lives per open WebSocket, most of them idle, and the budget for an idle connection
// is 512 bytes in total. Idle it owns no heap memory, so its share is its inline size: the limit,
// the box pointer and three small fields.
const _: () = assert!(std::mem::size_of::<Decoder>() <= 24);

impl Decoder {
    /// A decoder that rejects messages over `max_message_size` bytes (after reassembly) with
    /// [`WsError::MessageTooBig`] (1009).
    #[cfg(any(test, feature = "internals"))]
    pub fn new(max_message_size: usize) -> Self {
        Decoder::with_deflate(max_message_size, false)
    }

    /// A decoder for a connection that negotiated permessage-deflate (`deflate`) or not. The
    /// limit is on the inflated size of a compressed message.
    pub fn with_deflate(max_message_size: usize, deflate: bool) -> Self {
        Decoder {
            max_message_size,
            partial: None,
            failed: None,
            closed: false,
            deflate,
        }
    }

    /// The limit given to [`Decoder::new`].
    #[cfg(any(test, feature = "internals"))]
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// No partial frame or message is held: the connection is between messages.
    #[cfg(any(test, feature = "internals"))]
    pub fn is_idle(&self) -> bool {
        self.partial.as_ref().is_none_or(|p| p.is_idle())
    }

    /// A Close has been delivered; further input is ignored.
    #[cfg(any(test, feature = "internals"))]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Consumes ALL of `data` (the caller never keeps leftovers: anything that is not a whole
    /// frame is kept inside the decoder).
    ///
    /// Calls `on_msg` for every complete message or control frame, in order. `data` is unmasked
    /// in place, which is why it is `&mut`. Stops at the first protocol error and returns it
    /// (messages before it have been delivered; the caller then closes the connection with
    /// `err.close_code()`). After a Close message has been delivered, remaining bytes are ignored.
    pub fn feed(
        &mut self,
        data: &mut [u8],
        on_msg: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), WsError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let res = self.feed_inner(data, on_msg);
        if let Err(err) = res {
            self.failed = Some(err);
        }
        if self.partial.as_ref().is_some_and(|p| p.is_idle()) {
            self.partial = None;
        }
        res
    }

    /// The slow path's state, allocated on first use.
    fn partial(&mut self) -> &mut Partial {
        self.partial.get_or_insert_with(Box::default)
    }

    fn feed_inner(
        &mut self,
        data: &mut [u8],
        on_msg: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), WsError> {
        let mut pos = 0;
        while pos < data.len() && !self.closed {
            if let Some(frame) = self.partial.as_ref().and_then(|p| p.frame) {
                let take = frame.remaining.min(data.len() - pos);
                let piece = &mut data[pos..pos + take];
                pos += take;
                self.payload_piece(frame, piece, on_msg)?;
                continue;
            }

            let Some((h, used)) = self.read_header(&data[pos..])? else {
                // The partial header is now in `hdr`; everything was consumed.
                return Ok(());
            };
            pos += used;
            self.check_frame_start(&h)?;
            // Fits: control ≤125, data ≤ max_message_size (checked just above).
            let len = h.payload_len as usize;

            let whole = data.len() - pos >= len;
            let standalone = h.opcode.is_control() || (h.fin && h.opcode != OpCode::Continuation);
            if whole && standalone {
                // Fast path: the entire message is in the caller's buffer.
                let payload = &mut data[pos..pos + len];
                pos += len;
                unmask(payload, h.mask, 0);
                if h.rsv1 {
                    let max = self.max_message_size;
                    deflate::inflate(payload, max, |m| self.deliver(h.opcode, m, on_msg))??;
                } else {
                    self.deliver(h.opcode, payload, on_msg)?;
                }
                continue;
            }

            if !h.opcode.is_control() && h.opcode != OpCode::Continuation {
                let p = self.partial();
                p.message = Some(h.opcode);
                p.compressed = h.rsv1;
            }
            let frame = PartialFrame {
                opcode: h.opcode,
                fin: h.fin,
                mask: h.mask,
                mask_offset: 0,
                remaining: len,
            };
            if len == 0 {
                // An empty fragment: no payload bytes will come to finish it in the loop above.
                self.payload_piece(frame, &mut [], on_msg)?;
            } else {
                self.partial().frame = Some(frame);
            }
        }
        Ok(())
    }

    /// Parses the next header, from `input` directly or by completing the partial one in `hdr`.
    /// Returns the header and how many bytes of `input` it used, or `None` after stashing all of
    /// `input` (it was not enough to finish the header).
    fn read_header(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, usize)>, WsError> {
        let held = self.partial.as_ref().map_or(0, |p| usize::from(p.hdr_len));
        let deflate = self.deflate;
        if held == 0 {
            if let Some(found) = FrameHeader::parse_ext(input, deflate)? {
                return Ok(Some(found));
            }
            // `parse` wanted more than is here, and it never wants more than 14 bytes.
            debug_assert!(input.len() < MAX_HEADER_LEN);
            let p = self.partial();
            p.hdr[..input.len()].copy_from_slice(input);
            p.hdr_len = input.len() as u8;
            return Ok(None);
        }
        // Top up to 14 bytes; if the header turns out shorter, only its part counts as used.
        let p = self.partial();
        let take = (MAX_HEADER_LEN - held).min(input.len());
        p.hdr[held..held + take].copy_from_slice(&input[..take]);
        match FrameHeader::parse_ext(&p.hdr[..held + take], deflate)? {
            Some((h, n)) => {
                p.hdr_len = 0;
                Ok(Some((h, n - held)))
            }
            None => {
                p.hdr_len = (held + take) as u8;
                Ok(None)
            }
        }
    }

    /// The fragmentation and size rules, checked the moment a header is complete so that an
    /// oversize frame fails before any of its payload is read.
    fn check_frame_start(&self, h: &FrameHeader) -> Result<(), WsError> {
        let (message, so_far, compressed) = match &self.partial {
            Some(p) => (p.message, p.msg.len(), p.compressed),
            None => (None, 0, false),
        };
        debug_assert!(message.is_some() || so_far == 0);
        match (h.opcode, message) {
            (op, _) if op.is_control() => return Ok(()),
            (OpCode::Continuation, None) => return Err(WsError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => return Err(WsError::ExpectedContinuation),
            _ => {}
        }
        // `msg` holds every earlier fragment of this message (empty for a new message). A
        // compressed message's real limit, on its inflated size, is checked as it is inflated.
        let total = (so_far as u64).saturating_add(h.payload_len);
        let compressed = if h.opcode == OpCode::Continuation {
            compressed
        } else {
            h.rsv1
        };
        let limit = if compressed {
            compressed_wire_limit(self.max_message_size)
        } else {
            self.max_message_size
        };
        if total > limit as u64 {
            return Err(WsError::MessageTooBig);
        }
        Ok(())
    }

    /// Handles one piece of the current slow-path frame's payload (possibly empty), finishing the
    /// frame (and maybe the message) when it was the last piece.
    fn payload_piece(
        &mut self,
        mut frame: PartialFrame,
        piece: &mut [u8],
        on_msg: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), WsError> {
        unmask(piece, frame.mask, usize::from(frame.mask_offset));
        frame.mask_offset = ((usize::from(frame.mask_offset) + piece.len()) % 4) as u8;
        frame.remaining -= piece.len();
        let max = self.max_message_size;
        let p = self.partial();

        if frame.opcode.is_control() {
            p.ctrl.extend_from_slice(piece);
            if frame.remaining > 0 {
                p.frame = Some(frame);
                return Ok(());
            }
            p.frame = None;
            let ctrl = std::mem::take(&mut p.ctrl);
            return self.deliver(frame.opcode, &ctrl, on_msg);
        }

        p.msg.extend_from_slice(piece);
        if p.message == Some(OpCode::Text) && !p.compressed {
            p.check_utf8_so_far()?;
        }
        if frame.remaining > 0 {
            p.frame = Some(frame);
            return Ok(());
        }
        p.frame = None;
        if !frame.fin {
            return Ok(());
        }

        // The last fragment: deliver the reassembled message.
        // `message` is `Some` here: a Text/Binary start set it on entering the slow path, and
        // `check_frame_start` lets a continuation through only while it is set.
        let Some(kind) = p.message.take() else {
            unreachable!("data frame without a message in progress");
        };
        let msg = std::mem::take(&mut p.msg);
        let whole_chars = std::mem::take(&mut p.utf8_checked) == msg.len();
        if std::mem::take(&mut p.compressed) {
            deflate::inflate(&msg, max, |m| self.deliver(kind, m, on_msg)).and_then(|r| r)
        } else if kind == OpCode::Text && !whole_chars {
            // Ends inside a multi-byte sequence.
            Err(WsError::InvalidUtf8)
        } else {
            self.deliver(kind, &msg, on_msg)
        }
    }

    /// Validates and hands out one complete message or control frame.
    fn deliver(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        on_msg: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), WsError> {
        let message = match opcode {
            OpCode::Text => {
                // On the slow path this re-checks bytes `check_utf8_so_far` already passed. The
                // alternative, `from_utf8_unchecked`, would be the only `unsafe` in ws/; UTF-8
                // validation runs at many GB/s and the slow path is the rare one.
                Message::Text(std::str::from_utf8(payload).map_err(|_| WsError::InvalidUtf8)?)
            }
            OpCode::Binary => Message::Binary(payload),
            OpCode::Ping => Message::Ping(payload),
            OpCode::Pong => Message::Pong(payload),
            OpCode::Close => {
                let (code, reason) = parse_close_payload(payload)?;
                self.closed = true;
                Message::Close { code, reason }
            }
            OpCode::Continuation => unreachable!("a continuation is delivered as its message"),
        };
        on_msg(message);
        Ok(())
    }
}

/// Reads a received Close payload: empty (no code, which the API reports as `None` rather than
/// the local-only 1005), or a 2-byte big-endian code followed by a UTF-8 reason.
///
/// Errors: 1 byte is too short for a code (`InvalidClosePayload`, 1002); a code not valid on the
/// wire is `InvalidCloseCode` (1002); a reason that is not UTF-8 is `InvalidCloseReason` (1007).
/// The 125-byte limit is a frame rule, already enforced by the header parser.
fn parse_close_payload(payload: &[u8]) -> Result<(Option<u16>, &str), WsError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(WsError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close::is_valid_wire_code(code) {
                return Err(WsError::InvalidCloseCode);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidCloseReason)?;
            Ok((Some(code), reason))
        }
    }
}

#[cfg(test)]
mod tests;
