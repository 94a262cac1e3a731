//! The per-core deflate codec: compressing outgoing messages into RSV1 frames and inflating
//! incoming ones (RFC 7692 §7.2), with no state per connection.
//!
//! Owns: one inflater and one compressor per window size, kept in a thread-local (each core is
//! one thread, so this is per core with no lock), the compression threshold, and
//! [`OutFrames`], which encodes each frame of a message at most once. Does not own: deciding
//! whether a connection negotiated the extension (`offer.rs` and the upgrade) or the RSV1 rules
//! of the frame header (`frame.rs`).
//!
//! Because every connection agreed to `*_no_context_takeover`, each message is a stream of its
//! own: the codec resets before each message and nothing carries over, so one inflater and one
//! compressor serve every connection of the core, and an idle connection holds no codec memory.
//!
//! - Compress: raw deflate with a sync flush, minus the trailing `00 00 FF FF` (§7.2.1). A
//!   message that would not come out smaller is sent plain (RSV1 clear), as is one below the
//!   threshold: both are legal per message (§6).
//! - Inflate: the payload, then `00 00 FF FF` (§7.2.2), into a core-wide buffer grown in steps
//!   and never past `max_message_size + 1` bytes: the first byte over the limit stops the
//!   inflater, so a small "bomb" costs at most the limit in memory and time, never its full
//!   inflated size.
//! - Relay without deflating: while a compressed message is being delivered (inside
//!   [`inflate`]'s `deliver`), the codec keeps its compressed payload and its inflated bytes
//!   ([`Inbound`]). A message the handler sends on from there (the echo, a relay, a broadcast
//!   with `--persist false`) whose bytes equal the inbound message goes out as the client's own
//!   compressed payload behind our RSV1 header, and deflate does not run. That is a valid
//!   frame for the recipients because the client's message is a stream of its own (it agreed
//!   to `client_no_context_takeover`) whose back-references reach at most 2^15 bytes (we never
//!   restrict the client's window) and at most the message's length: so it is passed on when
//!   every recipient allows a 2^15 window, or the message is no longer than the smallest
//!   window allowed. A client stream that ended in a final block (BFINAL) is not passed on
//!   (we ignore bytes after it; a recipient might not). A handler that sends the message on
//!   later (the `main` party, after its history write is durable) takes the compressed payload
//!   during the delivery with [`inbound_payload`] and hands it to [`OutFrames::relaying`].

use std::{cell::Cell, cell::RefCell, rc::Rc};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::super::{
    error::WsError,
    frame::{header_len, write_header_rsv1, OpCode},
};

/// Messages shorter than this go out uncompressed. Default of `--compression-threshold`; see
/// the README ("Compression") for how it was chosen and what to measure.
pub const DEFAULT_THRESHOLD: usize = 128;

/// Compression level: 1, the fastest. On chat-like JSON (the tests' `chat_json`) zlib-rs at
/// level 1 makes 256 / 1,000 / 4,000 bytes into 167 / 382 / 868, level 6 into 146 / 299 / 608,
/// at about twice the CPU (a rough single-run timing, README "Compression"). One deflate per
/// broadcast is the cost the CPU target is about, so the fast level it is until measured.
const LEVEL: u32 = 1;

/// The 4 bytes a sync flush ends with, removed by the sender and put back by the receiver.
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Output buffers whose capacity grew past this are freed after use, so one large message does
/// not pin memory on the core afterwards.
const RETAINED: usize = 64 * 1024;

/// The smallest window the compressor can use (zlib refuses 2^8 for raw deflate).
pub const MIN_COMPRESS_BITS: u8 = 9;

thread_local! {
    /// This core's codec.
    static CODEC: RefCell<Codec> = RefCell::new(Codec::default());
    /// This core's `--compression-threshold` (see [`set_threshold`]).
    static THRESHOLD: Cell<usize> = const { Cell::new(DEFAULT_THRESHOLD) };
}

#[derive(Default)]
struct Codec {
    /// Made on first use (about 40 KiB with its 32 KiB window).
    inflater: Option<Decompress>,
    /// Compressors for window bits 9..=15, made on first use of each size. One with a 32 KiB
    /// window holds a few hundred KiB (zlib's formula: 2^(bits+2) bytes plus 128 KiB); the
    /// small windows are rare (browsers never ask for them).
    compressors: [Option<Compress>; 7],
    /// Scratch output of the compressor (copied into the exact-size frame).
    deflated: Vec<u8>,
    /// Output of the inflater, lent to `inflate`'s caller for the message's delivery.
    inflated: Vec<u8>,
    /// The compressed message being delivered, if any (module note: relay without deflating).
    inbound: Inbound,
}

/// The compressed message that is being delivered: what a relay of it can send as is.
#[derive(Default)]
struct Inbound {
    /// Set only inside [`inflate`]'s `deliver`, for a message that may be passed on.
    active: bool,
    /// The client's payload (all fragments, without the `00 00 FF FF` tail).
    compressed: Vec<u8>,
    /// What it inflated to (a copy: the inflater's buffer is lent to the handler meanwhile).
    inflated: Vec<u8>,
}

impl Inbound {
    /// Whether `payload` is the message being delivered (and worth passing on).
    fn is(&self, payload: &[u8]) -> bool {
        self.active
            && payload.len() == self.inflated.len()
            && self.compressed.len() < payload.len()
            && payload == self.inflated.as_slice()
    }

    /// The inbound message's payload as a frame to recipients whose smallest window is
    /// 2^`bits`, if `payload` is that message and its stream fits the window (module note).
    fn frame(&self, opcode: OpCode, payload: &[u8], bits: u8) -> Option<Rc<[u8]>> {
        if !self.is(payload) {
            return None;
        }
        relay_frame(opcode, &self.compressed, payload.len(), bits)
    }
}

/// A client's compressed `body` of a `len`-byte message as our RSV1 frame, for recipients
/// whose smallest window is 2^`bits`: `None` if the client's stream might reach further back
/// than that (it may use 2^15) or the body is not smaller than the message.
fn relay_frame(opcode: OpCode, body: &[u8], len: usize, bits: u8) -> Option<Rc<[u8]>> {
    let fits = bits >= 15 || len <= 1usize << bits;
    if !fits || body.len() >= len {
        return None;
    }
    let mut f = Vec::with_capacity(header_len(body.len()) + body.len());
    write_header_rsv1(&mut f, opcode, body.len());
    f.extend_from_slice(body);
    Some(Rc::from(f))
}

/// The compressed payload of the message being delivered, if `payload` is that message: for
/// a handler that sends it on later, after the delivery (the `main` party, once its history
/// write is durable), through [`OutFrames::relaying`]. `None` outside a delivery, for other
/// bytes, and for a payload that may not be passed on (module note).
pub fn inbound_payload(payload: &[u8]) -> Option<Rc<[u8]>> {
    CODEC.with(|c| {
        let c = c.try_borrow().ok()?;
        c.inbound
            .is(payload)
            .then(|| Rc::from(c.inbound.compressed.as_slice()))
    })
}

/// Sets this core's threshold: messages shorter than `bytes` are not compressed. Called for
/// each connection that negotiates the extension (the value is the same for every core).
pub fn set_threshold(bytes: usize) {
    THRESHOLD.with(|t| t.set(bytes));
}

fn threshold() -> usize {
    THRESHOLD.with(Cell::get)
}

/// Inflates one message's payload (all its fragments, concatenated) and hands the result to
/// `deliver`.
///
/// # Errors
/// [`WsError::MessageTooBig`] as soon as the output passes `max` bytes (nothing more is
/// inflated), [`WsError::BadCompressedData`] if the payload is not a deflate stream.
pub fn inflate<R>(
    payload: &[u8],
    max: usize,
    deliver: impl FnOnce(&[u8]) -> R,
) -> Result<R, WsError> {
    // The output buffer and the inflater are taken out of the thread-local for the call, so
    // `deliver` (a party's handler) may use the codec itself, e.g. to broadcast.
    let (mut inflater, mut out) = CODEC.with(|c| {
        let mut c = c.borrow_mut();
        let inflater = c.inflater.take().unwrap_or_else(|| Decompress::new(false));
        (inflater, std::mem::take(&mut c.inflated))
    });
    out.clear();
    let res = inflate_into(&mut inflater, payload, max, &mut out);
    let r = res.map(|clean| {
        // Kept for a relay only when it saved bytes, is small enough to copy cheaply, and its
        // stream ended where a sync flush ends (see `ends_on_a_block_boundary`).
        let keep = clean
            && payload.len() < out.len()
            && out.len() <= RETAINED
            && ends_on_a_block_boundary(&mut inflater);
        let _active = keep.then(|| {
            CODEC.with(|c| {
                let inbound = &mut c.borrow_mut().inbound;
                for (v, from) in [
                    (&mut inbound.compressed, payload),
                    (&mut inbound.inflated, &out[..]),
                ] {
                    v.clear();
                    v.reserve_exact(from.len()); // capacity stays <= RETAINED
                    v.extend_from_slice(from);
                }
                inbound.active = true;
            });
            InboundActive
        });
        deliver(&out)
    });
    CODEC.with(|c| {
        let mut c = c.borrow_mut();
        c.inflater = Some(inflater);
        if out.capacity() <= RETAINED {
            c.inflated = out;
        }
    });
    r
}

/// Clears [`Inbound::active`] when dropped: at the end of the delivery, and also if it unwinds.
struct InboundActive;

impl Drop for InboundActive {
    fn drop(&mut self) {
        // `try_with`: nothing to clear while the thread's locals are being destroyed.
        let _ = CODEC.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.inbound.active = false;
            }
        });
    }
}

/// Whether the inflater, after a message and its `00 00 FF FF` tail, stands where a sync
/// flush leaves a stream: between blocks, on a byte boundary. Our inflater also accepts a
/// payload that ends inside a block (the tail then read as block data), which must not be
/// passed on: a recipient that keeps its inflater between messages (RFC 7692 allows that)
/// would be left inside the block. Probed by feeding `03 00`, an empty final block with fixed
/// codes: from a clean boundary it ends the stream, consuming both bytes and producing
/// nothing; inside a stored block it is data; inside a Huffman block its bits are codes that
/// cannot complete a final block within 16 bits; after stray bits it makes a bad block type.
fn ends_on_a_block_boundary(d: &mut Decompress) -> bool {
    const PROBE: [u8; 2] = [0x03, 0x00];
    let mut scratch = Vec::with_capacity(16);
    let (in0, out0) = (d.total_in(), d.total_out());
    let status = d.decompress_vec(&PROBE, &mut scratch, FlushDecompress::Finish);
    matches!(status, Ok(Status::StreamEnd))
        && d.total_in() - in0 == PROBE.len() as u64
        && d.total_out() == out0
}

/// Inflates `payload` and the tail into `out`. `Ok(true)`: the stream ran to its end without a
/// final block, so the payload can be passed on as it is (module note).
fn inflate_into(
    d: &mut Decompress,
    payload: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<bool, WsError> {
    d.reset(false);
    for input in [payload, &TAIL[..]] {
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(WsError::MessageTooBig);
                }
                // Grow geometrically, but never past one byte over the limit.
                let room = out.len().max(4096).min(max + 1 - out.len());
                out.reserve_exact(room);
            }
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = d
                .decompress_vec(&input[pos..], out, FlushDecompress::Sync)
                .map_err(|_| WsError::BadCompressedData)?;
            pos += (d.total_in() - in0) as usize;
            let progress = d.total_in() != in0 || d.total_out() != out0;
            if out.len() > max {
                return Err(WsError::MessageTooBig);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL): anything after it is not part of the message.
                return Ok(false);
            }
            let room_left = out.len() < out.capacity();
            if pos == input.len() && room_left {
                break;
            }
            if !progress && room_left {
                return Err(WsError::BadCompressedData);
            }
        }
    }
    Ok(true)
}

/// Compresses `payload` as one message with a window of 2^`window_bits` bytes and returns the
/// complete frame (FIN and RSV1 set, exact size), or `None` if it would not be smaller than the
/// plain frame.
///
/// `window_bits` must be 9..=15 (see [`MIN_COMPRESS_BITS`]).
pub fn compressed_frame(opcode: OpCode, payload: &[u8], window_bits: u8) -> Option<Rc<[u8]>> {
    debug_assert!((MIN_COMPRESS_BITS..=15).contains(&window_bits));
    let bits = window_bits.clamp(MIN_COMPRESS_BITS, 15);
    CODEC.with(|c| {
        let mut c = c.borrow_mut();
        let Codec {
            compressors,
            deflated,
            inbound,
            ..
        } = &mut *c;
        if let Some(f) = inbound.frame(opcode, payload, bits) {
            return Some(f);
        }
        let comp = compressors[usize::from(bits - MIN_COMPRESS_BITS)].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(LEVEL), false, bits)
        });
        let ok = deflate_into(comp, payload, deflated);
        let frame = ok.and_then(|()| {
            let body = deflated.strip_suffix(&TAIL[..])?;
            if body.len() >= payload.len() {
                return None;
            }
            let mut f = Vec::with_capacity(header_len(body.len()) + body.len());
            write_header_rsv1(&mut f, opcode, body.len());
            f.extend_from_slice(body);
            Some(Rc::from(f))
        });
        if deflated.capacity() > RETAINED {
            *deflated = Vec::new();
        }
        frame
    })
}

/// Raw deflate of `payload` with a sync flush into `out` (cleared first).
fn deflate_into(c: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
    c.reset();
    out.clear();
    out.reserve(payload.len() / 2 + 64);
    loop {
        let before = c.total_in();
        c.compress_vec(&payload[c.total_in() as usize..], out, FlushCompress::Sync)
            .ok()?;
        let done = c.total_in() as usize == payload.len();
        // A sync flush is complete once all input is in and the output did not fill up.
        if done && out.len() < out.capacity() {
            return Some(());
        }
        if !done && c.total_in() == before && out.len() < out.capacity() {
            return None; // no progress with room to spare: cannot happen with zlib
        }
        out.reserve(out.capacity().max(64));
    }
}

/// One outgoing data message and its two frames, plain and compressed, each encoded at most
/// once however many recipients take it (a broadcast runs deflate at most once).
pub struct OutFrames<'a> {
    opcode: OpCode,
    payload: &'a [u8],
    /// The window the compressed frame is made with: the smallest any recipient allows (see
    /// [`OutFrames::new`]); 0 when nothing is to be compressed.
    window: u8,
    plain: Option<Rc<[u8]>>,
    /// `Some(None)`: tried, and not worth it (the output was not smaller).
    compressed: Option<Option<Rc<[u8]>>>,
    /// The client's compressed payload of this message, kept from its delivery
    /// ([`inbound_payload`]): used instead of deflating where the recipients' window allows.
    relay: Option<Rc<[u8]>>,
}

impl<'a> OutFrames<'a> {
    /// A message to send. `window` is the smallest window bits among the recipients that
    /// negotiated the extension (0 if none did): the one compressed frame is then readable by,
    /// and within the promise to, every one of them. Control frames, and messages below the
    /// threshold, are never compressed.
    pub fn new(opcode: OpCode, payload: &'a [u8], window: u8) -> Self {
        let compress = !opcode.is_control()
            && opcode != OpCode::Continuation
            && window >= MIN_COMPRESS_BITS
            && payload.len() >= threshold();
        OutFrames {
            opcode,
            payload,
            window: if compress { window.min(15) } else { 0 },
            plain: None,
            compressed: None,
            relay: None,
        }
    }

    /// The same message, whose compressed payload as its sender sent it is `relay` (from
    /// [`inbound_payload`]): recipients get that instead of a deflate of ours, where the
    /// window allows.
    pub fn relaying(mut self, relay: Option<Rc<[u8]>>) -> Self {
        self.relay = relay;
        self
    }

    /// A message that is never compressed, whoever receives it.
    #[cfg(any(test, feature = "internals"))]
    pub fn plain(opcode: OpCode, payload: &'a [u8]) -> Self {
        OutFrames::new(opcode, payload, 0)
    }

    /// The frame for a recipient whose agreed window bits are `peer_window` (0: it did not
    /// negotiate the extension).
    pub fn frame_for(&mut self, peer_window: u8) -> Rc<[u8]> {
        // A peer whose window is smaller than the one we compress with gets the plain frame.
        if self.window != 0 && peer_window >= self.window {
            let (opcode, payload, window) = (self.opcode, self.payload, self.window);
            let relay = self.relay.as_deref();
            let compressed = self.compressed.get_or_insert_with(|| {
                relay
                    .and_then(|body| relay_frame(opcode, body, payload.len(), window))
                    .or_else(|| compressed_frame(opcode, payload, window))
            });
            if let Some(f) = compressed {
                return f.clone();
            }
        }
        self.plain
            .get_or_insert_with(|| super::super::encode_frame(self.opcode, self.payload).into())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ws::frame::{FrameHeader, MAX_HEADER_LEN};

    /// `n` bytes of chat-like JSON: an array of message objects (cut at `n`).
    fn chat_json(n: usize) -> String {
        let names = ["alice", "bob", "carol", "dave", "erin"];
        let texts = [
            "hey, are we still on for tonight?",
            "sure, 8pm works for me",
            "can someone share the doc link again",
            "lol that meeting was long",
            "pushed the fix, please review",
            "ok",
        ];
        let mut s = String::from("[");
        let mut i = 0;
        while s.len() < n {
            s += &format!(
                r#"{{"id":"msg-{:06}","user":"{}","ts":{},"text":"{}"}},"#,
                1000 + i * 37,
                names[i % 5],
                1_764_633_600_000u64 + (i as u64) * 1733,
                texts[(i * 7) % 6]
            );
            i += 1;
        }
        s.truncate(n);
        s
    }

    /// The payload of a server frame made by `compressed_frame`, with its RSV1 bit checked.
    fn body(frame: &[u8]) -> &[u8] {
        assert_eq!(frame[0] & 0xF0, 0xC0, "FIN and RSV1, not RSV2/3");
        let len7 = frame[1] & 0x7F;
        let at = match len7 {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        &frame[at..]
    }

    fn round_trip(m: &[u8], bits: u8) {
        let Some(f) = compressed_frame(OpCode::Binary, m, bits) else {
            return; // incompressible: sent plain, nothing to inflate
        };
        let got = inflate(body(&f), m.len(), |out| out.to_vec()).unwrap();
        assert_eq!(got, m, "window bits {bits}");
    }

    proptest! {
        // Few cases: zlib-rs is slow in a debug build, and each case is up to 40 KB.
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn inflate_deflate_is_identity(
            m in prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..40_000),
            bits in MIN_COMPRESS_BITS..=15u8,
        ) {
            round_trip(&m, bits);
        }
    }

    #[test]
    fn every_window_round_trips_repetitive_messages() {
        for bits in MIN_COMPRESS_BITS..=15 {
            for n in [200, 1000, 5000, 100_000] {
                let m = chat_json(n);
                let f = compressed_frame(OpCode::Text, m.as_bytes(), bits).expect("compressible");
                // At least a quarter smaller, even at 200 bytes and with a 512-byte window.
                assert!(
                    f.len() * 4 < m.len() * 3,
                    "{n} bytes at {bits} bits: {}",
                    f.len()
                );
                round_trip(m.as_bytes(), bits);
            }
        }
    }

    /// The 2^bits window is honoured: no back-reference reaches further than 2^bits bytes. A
    /// message made of one random 600-byte block repeated compresses well with a 1 KiB window
    /// (each copy refers 600 bytes back), and not at all with a 512-byte one.
    #[test]
    fn small_windows_reach_no_further_than_allowed() {
        let mut x = 0x1234_5678u32;
        let block: Vec<u8> = (0..600)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let m = block.repeat(8);
        let at10 = compressed_frame(OpCode::Binary, &m, 10).expect("repeats within 1 KiB");
        assert!(at10.len() < 1500, "{}", at10.len());
        assert!(
            compressed_frame(OpCode::Binary, &m, 9).is_none(),
            "nothing within 512 B"
        );
        round_trip(&m, 10);
    }

    /// A client's compressed payload for `m`: raw deflate at `level` (not ours, 1), ended with
    /// a sync flush minus its tail, or with a final block when `final_block`.
    fn client_payload(m: &[u8], level: u32, final_block: bool) -> Vec<u8> {
        let mut c = Compress::new(Compression::new(level), false);
        let mut out = Vec::with_capacity(m.len() + 64);
        let flush = if final_block {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        c.compress_vec(m, &mut out, flush).unwrap();
        assert_eq!(c.total_in() as usize, m.len());
        if !final_block {
            out.truncate(out.strip_suffix(&TAIL[..]).unwrap().len());
        }
        out
    }

    /// A message sent on while it is delivered goes out as the client's own payload (no
    /// deflate), only if it is the same bytes, fits the recipients' window, and the client's
    /// stream had no final block; otherwise it is deflated as usual. Either way it inflates
    /// to the message.
    #[test]
    fn a_relay_passes_the_clients_payload_on() {
        let m = chat_json(1000);
        let client = client_payload(m.as_bytes(), 9, false);
        // The frame a handler would make from inside the delivery, from a copy of the bytes
        // (as the main party does) at each recipient window.
        let relay = |payload: &[u8], bits: u8, other: &[u8]| {
            inflate(payload, 1 << 20, |got| {
                assert_eq!(got, m.as_bytes());
                let copy = got.to_vec();
                (
                    compressed_frame(OpCode::Text, &copy, bits).unwrap(),
                    compressed_frame(OpCode::Text, other, bits).unwrap(),
                )
            })
            .unwrap()
        };
        let other = chat_json(1001);
        let (f, g) = relay(&client, 15, other.as_bytes());
        assert_eq!(body(&f), client.as_slice(), "passed on as the client sent it");
        assert_ne!(body(&g), client.as_slice(), "another message is deflated");
        assert_eq!(inflate(body(&g), 1 << 20, |o| o.to_vec()).unwrap(), other.as_bytes());
        // Outside a delivery: deflated by us (level 1 makes other bytes than the client's 9).
        let ours = compressed_frame(OpCode::Text, m.as_bytes(), 15).unwrap();
        assert_ne!(body(&ours), client.as_slice());
        // A 2^9 window is smaller than the message: the client's back-references may reach
        // further, so it is deflated with the window; 2^10 holds all 1000 bytes.
        let (f9, _) = relay(&client, 9, other.as_bytes());
        assert_ne!(body(&f9), client.as_slice());
        round_trip(m.as_bytes(), 9);
        let (f10, _) = relay(&client, 10, other.as_bytes());
        assert_eq!(body(&f10), client.as_slice());
        // A stream that ended in a final block is never passed on.
        let fin = client_payload(m.as_bytes(), 9, true);
        let (ff, _) = relay(&fin, 15, other.as_bytes());
        assert_ne!(body(&ff), fin.as_slice());
        assert_eq!(inflate(body(&ff), 1 << 20, |o| o.to_vec()).unwrap(), m.as_bytes());
        // After the delivery the inbound message is forgotten.
        let after = compressed_frame(OpCode::Text, m.as_bytes(), 15).unwrap();
        assert_eq!(body(&after), body(&ours));
    }

    /// A payload that ends inside a stored block is accepted (our tail is read as its last 4
    /// bytes of data), but it is not passed on: a recipient that keeps its inflater would be
    /// left inside the block.
    #[test]
    fn a_payload_ending_inside_a_block_is_not_passed_on() {
        let head = vec![b'a'; 1000];
        let mut c = Compress::new(Compression::new(6), false);
        let mut payload = Vec::with_capacity(2000);
        c.compress_vec(&head, &mut payload, FlushCompress::Sync)
            .unwrap();
        assert!(payload.ends_with(&TAIL));
        // A stored block of 12 bytes with only 4 of them here: the tail's 4 are read as the
        // next 4, and the block still wants 4 more.
        payload.extend_from_slice(&[0x00, 0x0C, 0x00, 0xF3, 0xFF, b'w', b'x', b'y', b'z']);
        let mut want = head.clone();
        want.extend_from_slice(b"wxyz");
        want.extend_from_slice(&TAIL);
        let f = inflate(&payload, 1 << 20, |got| {
            assert_eq!(got, want.as_slice());
            compressed_frame(OpCode::Binary, got, 15).unwrap()
        })
        .unwrap();
        assert_ne!(body(&f), payload.as_slice(), "deflated by us, not passed on");
        assert_eq!(inflate(body(&f), 1 << 20, |o| o.to_vec()).unwrap(), want);
        // The same message ended as a sync flush ends is passed on.
        let mut clean = payload[..payload.len() - 9].to_vec();
        clean.truncate(clean.len() - TAIL.len());
        let g = inflate(&clean, 1 << 20, |got| {
            compressed_frame(OpCode::Binary, got, 15).unwrap()
        })
        .unwrap();
        assert_eq!(body(&g), clean.as_slice());
    }

    /// Taken during the delivery, used after it: [`inbound_payload`] and
    /// [`OutFrames::relaying`], as the `main` party does across its history write.
    #[test]
    fn a_payload_kept_from_the_delivery_is_relayed_later() {
        let m = chat_json(1000);
        let client = client_payload(m.as_bytes(), 6, false);
        let kept = inflate(&client, 1 << 20, inbound_payload).unwrap();
        let kept = kept.expect("taken during the delivery");
        assert_eq!(&kept[..], client.as_slice());
        assert!(inbound_payload(m.as_bytes()).is_none(), "not after it");
        let later = |window: u8| {
            OutFrames::new(OpCode::Text, m.as_bytes(), window)
                .relaying(Some(kept.clone()))
                .frame_for(window)
        };
        assert_eq!(body(&later(15)), client.as_slice());
        assert_eq!(body(&later(10)), client.as_slice(), "1000 bytes fit 2^10");
        let f = later(9);
        assert_ne!(body(&f), client.as_slice(), "deflated with the 512-byte window");
        assert_eq!(inflate(body(&f), 1 << 20, |o| o.to_vec()).unwrap(), m.as_bytes());
    }

    /// Through [`OutFrames`], as a broadcast does: compressed members get the client's
    /// payload, plain members the plain frame.
    #[test]
    fn a_broadcast_from_the_delivery_relays_the_payload() {
        let m = chat_json(700);
        let client = client_payload(m.as_bytes(), 6, false);
        let (c, p) = inflate(&client, 1 << 20, |got| {
            let mut frames = OutFrames::new(OpCode::Text, got, 15);
            (frames.frame_for(15), frames.frame_for(0))
        })
        .unwrap();
        assert_eq!(body(&c), client.as_slice());
        assert_eq!(&p[2 + 2..], m.as_bytes(), "plain frame, 126-length header");
    }

    #[test]
    fn known_vector_from_rfc_7692() {
        // §7.2.3.1: "Hello" compressed without context takeover.
        let payload = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&payload, 5, |o| o.to_vec()), Ok(b"Hello".to_vec()));
        // §7.2.3.3: a stored (uncompressed) block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate(&stored, 5, |o| o.to_vec()), Ok(b"Hello".to_vec()));
        // §7.2.3.6: an empty message may be a single 0x00.
        assert_eq!(inflate(&[0x00], 0, |o| o.len()), Ok(0));
        // One byte over the limit.
        assert_eq!(
            inflate(&payload, 4, |o| o.to_vec()),
            Err(WsError::MessageTooBig)
        );
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        // 10 MiB of zeros compresses to about 100 KiB (level 1 emits fixed-code matches).
        let zeros = vec![0u8; 10 << 20];
        let f = compressed_frame(OpCode::Binary, &zeros, 15).unwrap();
        assert!(f.len() < 200_000, "{}", f.len());
        assert_eq!(
            inflate(body(&f), 64 * 1024, |o| o.len()),
            Err(WsError::MessageTooBig)
        );
        assert_eq!(inflate(body(&f), 10 << 20, |o| o.len()), Ok(10 << 20));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // 0xFF starts a block of the reserved type 3.
        assert_eq!(
            inflate(&[0xFF, 0xFF, 0xFF], 1000, |o| o.len()),
            Err(WsError::BadCompressedData)
        );
        let mut x = 7u32;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = inflate(&junk, 1 << 16, |o| o.len());
        }
        // The core's inflater is fine afterwards.
        assert_eq!(
            inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 5, |o| o
                .to_vec()),
            Ok(b"Hello".to_vec())
        );
    }

    #[test]
    fn out_frames_encode_each_frame_once() {
        let m = chat_json(1000);
        let mut frames = OutFrames::new(OpCode::Text, m.as_bytes(), 15);
        let c1 = frames.frame_for(15);
        let c2 = frames.frame_for(15);
        assert!(Rc::ptr_eq(&c1, &c2), "one compressed frame shared");
        let p1 = frames.frame_for(0);
        let p2 = frames.frame_for(0);
        assert!(Rc::ptr_eq(&p1, &p2), "one plain frame shared");
        assert_eq!(p1[0], 0x81, "plain: RSV1 clear");
        assert_eq!(c1[0], 0xC1, "compressed: RSV1 set");
        // Compressed with a 2^12 window: a peer that allows less gets the plain frame.
        let mut frames = OutFrames::new(OpCode::Text, m.as_bytes(), 12);
        assert_eq!(frames.frame_for(15)[0], 0xC1);
        assert_eq!(frames.frame_for(12)[0], 0xC1);
        assert_eq!(frames.frame_for(11)[0], 0x81);
        assert_eq!(frames.frame_for(8)[0], 0x81, "window 8: never compressed");
        // Below the threshold, control frames, and window 8: plain for everyone.
        let short = chat_json(DEFAULT_THRESHOLD - 1);
        assert_eq!(
            OutFrames::new(OpCode::Text, short.as_bytes(), 15).frame_for(15)[0],
            0x81
        );
        assert_eq!(
            OutFrames::new(OpCode::Ping, m.as_bytes(), 15).frame_for(15)[0],
            0x89
        );
        assert_eq!(
            OutFrames::new(OpCode::Text, m.as_bytes(), 8).frame_for(15)[0],
            0x81
        );
        assert_eq!(
            OutFrames::plain(OpCode::Text, m.as_bytes()).frame_for(15)[0],
            0x81
        );
    }

    #[test]
    fn compressed_frames_parse_as_client_frames_would() {
        // The header we write is a valid RFC 6455 header (checked with our own parser after
        // adding a mask, as a client would send it).
        let m = chat_json(70_000);
        let f = compressed_frame(OpCode::Text, m.as_bytes(), 15).unwrap();
        let body = body(&f);
        let mut masked = crate::ws::encode_client_frame(true, OpCode::Text, body, [1, 2, 3, 4]);
        masked[0] |= 0x40;
        let (h, n) = FrameHeader::parse_ext(&masked[..MAX_HEADER_LEN], true)
            .unwrap()
            .unwrap();
        assert!(h.rsv1 && h.fin);
        assert_eq!(h.payload_len as usize + n, masked.len());
    }
}
