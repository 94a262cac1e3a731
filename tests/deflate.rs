//! permessage-deflate (RFC 7692) against a real server, with raw frames: the negotiation as
//! the 101 shows it, compressed messages both ways (checked by inflating them here with an
//! independent inflater), one compressed frame per broadcast next to the plain one, the
//! threshold, the uncompressed-send API, and the RSV1 and size rules with their close codes.

mod common;

use std::net::SocketAddr;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use partyring::{
    party::{Connection, Party},
    room::Room,
    ws::{Message, OpCode},
    Config, Server,
};

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// `n` bytes of chat-like JSON (compresses several times over).
fn chat_json(n: usize) -> String {
    let mut s = String::from("[");
    let mut i = 0u64;
    while s.len() < n {
        s += &format!(
            r#"{{"id":"msg-{i:06}","user":"user{}","text":"see you at the usual place"}},"#,
            i % 5
        );
        i += 1;
    }
    s.truncate(n);
    s
}

/// Raw deflate with a sync flush, tail removed: what a client puts in an RSV1 frame.
fn deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    loop {
        let at = c.total_in() as usize;
        c.compress_vec(&data[at..], &mut out, FlushCompress::Sync)
            .unwrap();
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xFF, 0xFF]));
    out.truncate(out.len() - 4);
    out
}

/// Inflates a server message and checks that no back-reference reaches further than 2^`bits`
/// bytes. zlib's inflaters cannot check that (within one call they look back into their output
/// buffer, not only into their window), so this is a small independent inflater ([`puff`]).
fn inflate(payload: &[u8], bits: u8) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let (out, farthest) = puff::inflate(&input).expect("a valid deflate stream");
    assert!(
        farthest <= 1 << bits,
        "a back-reference {farthest} bytes back, past the {}-byte window",
        1 << bits
    );
    // And zlib agrees on the bytes.
    let mut d = Decompress::new(false);
    let mut z = Vec::with_capacity(out.len() + 64);
    d.decompress_vec(&input, &mut z, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(z, out);
    out
}

/// A minimal raw-deflate decoder (RFC 1951) after zlib's `contrib/puff`, that also reports the
/// longest back-reference distance it met.
mod puff {
    const LEN_BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];

    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
        bit: u32,
    }

    impl Bits<'_> {
        fn get(&mut self, n: u32) -> Option<u32> {
            let mut v = 0;
            for i in 0..n {
                let byte = *self.data.get(self.pos)?;
                v |= u32::from((byte >> self.bit) & 1) << i;
                self.bit += 1;
                if self.bit == 8 {
                    self.bit = 0;
                    self.pos += 1;
                }
            }
            Some(v)
        }
    }

    /// Canonical Huffman code: how many codes of each length, and the symbols in code order.
    struct Huffman {
        count: [u16; 16],
        symbol: Vec<u16>,
    }

    impl Huffman {
        fn new(lengths: &[u8]) -> Huffman {
            let mut count = [0u16; 16];
            for &l in lengths {
                count[usize::from(l)] += 1;
            }
            count[0] = 0;
            let mut offs = [0u16; 16];
            for l in 1..15 {
                offs[l + 1] = offs[l] + count[l];
            }
            let mut symbol = vec![0; lengths.len()];
            for (s, &l) in lengths.iter().enumerate() {
                if l != 0 {
                    symbol[usize::from(offs[usize::from(l)])] = s as u16;
                    offs[usize::from(l)] += 1;
                }
            }
            Huffman { count, symbol }
        }

        fn decode(&self, b: &mut Bits<'_>) -> Option<u16> {
            let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
            for len in 1..16 {
                code |= b.get(1)? as i32;
                let count = i32::from(self.count[len]);
                if code - count < first {
                    return self.symbol.get((index + code - first) as usize).copied();
                }
                index += count;
                first = (first + count) << 1;
                code <<= 1;
            }
            None
        }
    }

    /// The inflated bytes and the farthest distance any back-reference used. Stops at the end
    /// of the input (a sync-flushed stream has no final block) or after a final block.
    pub fn inflate(data: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut b = Bits {
            data,
            pos: 0,
            bit: 0,
        };
        let (mut out, mut farthest) = (Vec::new(), 0usize);
        while b.pos < data.len() {
            let last = b.get(1)? == 1;
            match b.get(2)? {
                0 => {
                    if b.bit != 0 {
                        b.bit = 0;
                        b.pos += 1;
                    }
                    let len = usize::from(u16::from_le_bytes([
                        *data.get(b.pos)?,
                        *data.get(b.pos + 1)?,
                    ]));
                    let start = b.pos + 4;
                    out.extend_from_slice(data.get(start..start + len)?);
                    b.pos = start + len;
                }
                kind @ (1 | 2) => {
                    let (lit, dist) = if kind == 1 {
                        let mut l = [8u8; 288];
                        l[144..256].fill(9);
                        l[256..280].fill(7);
                        (Huffman::new(&l), Huffman::new(&[5; 30]))
                    } else {
                        let nlen = b.get(5)? as usize + 257;
                        let ndist = b.get(5)? as usize + 1;
                        let ncode = b.get(4)? as usize + 4;
                        let mut cl = [0u8; 19];
                        for &i in &ORDER[..ncode] {
                            cl[i] = b.get(3)? as u8;
                        }
                        let clh = Huffman::new(&cl);
                        let mut lengths = Vec::with_capacity(nlen + ndist);
                        while lengths.len() < nlen + ndist {
                            match clh.decode(&mut b)? {
                                s @ 0..=15 => lengths.push(s as u8),
                                16 => {
                                    let prev = *lengths.last()?;
                                    let n = 3 + b.get(2)?;
                                    lengths.extend(std::iter::repeat_n(prev, n as usize));
                                }
                                17 => {
                                    let n = 3 + b.get(3)?;
                                    lengths.extend(std::iter::repeat_n(0, n as usize));
                                }
                                _ => {
                                    let n = 11 + b.get(7)?;
                                    lengths.extend(std::iter::repeat_n(0, n as usize));
                                }
                            }
                        }
                        (
                            Huffman::new(&lengths[..nlen]),
                            Huffman::new(&lengths[nlen..]),
                        )
                    };
                    loop {
                        let sym = usize::from(lit.decode(&mut b)?);
                        if sym < 256 {
                            out.push(sym as u8);
                            continue;
                        }
                        if sym == 256 {
                            break;
                        }
                        let i = sym - 257;
                        let len = usize::from(*LEN_BASE.get(i)?)
                            + b.get(u32::from(LEN_EXTRA[i]))? as usize;
                        let d = usize::from(dist.decode(&mut b)?);
                        let dist = usize::from(*DIST_BASE.get(d)?)
                            + b.get(u32::from(DIST_EXTRA[d]))? as usize;
                        farthest = farthest.max(dist);
                        let from = out.len().checked_sub(dist)?;
                        for k in 0..len {
                            out.push(out[from + k]);
                        }
                    }
                }
                _ => return None,
            }
            if last {
                break;
            }
        }
        Some((out, farthest))
    }
}

/// Upgrades with these extra header lines; returns the client and the response.
fn upgrade(addr: SocketAddr, path: &str, headers: &str) -> (Client, HttpResponse) {
    let mut c = Client::connect(addr);
    let resp = c.request(ws_upgrade_with(path, headers).as_bytes());
    (c, resp)
}

fn extensions(resp: &HttpResponse) -> Option<&str> {
    resp.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, v)| v.as_str())
}

/// Connects with `offer` (if any) and checks the 101.
fn ws(addr: SocketAddr, path: &str, offer: Option<&str>) -> Client {
    let header = offer.map_or(String::new(), |o| {
        format!("Sec-WebSocket-Extensions: {o}\r\n")
    });
    let (c, resp) = upgrade(addr, path, &header);
    assert_eq!(resp.status, 101, "{}", resp.text());
    assert_eq!(extensions(&resp).is_some(), offer.is_some());
    c
}

/// One server frame: (first byte, payload).
fn frame(c: &mut Client) -> (u8, Vec<u8>) {
    c.try_ws_raw_frame().expect("EOF before a frame")
}

/// Reads one text message and says whether it came compressed.
fn text_message(c: &mut Client, bits: u8) -> (bool, String) {
    let (b0, payload) = frame(c);
    assert_eq!(
        b0 & 0xBF,
        0x81,
        "one whole text frame, RSV2/3 clear: {b0:#x}"
    );
    let compressed = b0 & 0x40 != 0;
    let bytes = if compressed {
        inflate(&payload, bits)
    } else {
        payload
    };
    (compressed, String::from_utf8(bytes).unwrap())
}

fn close_code(c: &mut Client) -> u16 {
    c.ws_close_code().expect("a close code")
}

#[test]
fn negotiation_as_the_101_shows_it() {
    let srv = start(1);
    let cases: &[(&str, Option<String>)] = &[
        (OFFER, Some(AGREED.into())),
        ("permessage-deflate", Some(AGREED.into())),
        (
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
            Some(format!("{AGREED}; server_max_window_bits=10")),
        ),
        // Several offers in order: the first one we can meet.
        (
            "permessage-deflate; server_max_window_bits=20, permessage-deflate; server_max_window_bits=9",
            Some(format!("{AGREED}; server_max_window_bits=9")),
        ),
        ("x-webkit-deflate-frame, permessage-deflate", Some(AGREED.into())),
        // Declined: an unknown parameter, a duplicate, a value out of range.
        ("permessage-deflate; mystery", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; client_max_window_bits=16", None),
        ("x-webkit-deflate-frame", None),
    ];
    for (offer, want) in cases {
        let (_c, resp) = upgrade(
            srv.addr,
            "/parties/echo/neg",
            &format!("Sec-WebSocket-Extensions: {offer}\r\n"),
        );
        assert_eq!(resp.status, 101, "{offer}");
        assert_eq!(extensions(&resp), want.as_deref(), "{offer}");
    }
    // Two header lines are one list.
    let (_c, resp) = upgrade(
        srv.addr,
        "/parties/echo/neg",
        "Sec-WebSocket-Extensions: foo\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    assert_eq!(extensions(&resp), Some(AGREED));
    // Malformed: 400, the connection is not upgraded.
    for bad in [
        "permessage-deflate;",
        "permessage-deflate; a=\"unterminated",
        ";",
        "a b",
    ] {
        let (mut c, resp) = upgrade(
            srv.addr,
            "/parties/echo/neg",
            &format!("Sec-WebSocket-Extensions: {bad}\r\n"),
        );
        assert_eq!(resp.status, 400, "{bad}");
        assert!(
            resp.text().contains("Sec-WebSocket-Extensions"),
            "{}",
            resp.text()
        );
        assert!(c.closed_by_server());
    }
    // Bytes that are not even UTF-8.
    let mut c = Client::connect(srv.addr);
    let mut req = ws_upgrade("/parties/echo/neg").into_bytes();
    req.truncate(req.len() - 2);
    req.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate; x=\xff\r\n\r\n");
    let resp = c.request(&req);
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().contains("Malformed Sec-WebSocket-Extensions"),
        "{}",
        resp.text()
    );
    // With compression off, offers are declined and malformed ones ignored, as before.
    let off = start_with(1, |c| c.compression = false);
    for offer in [OFFER, "permessage-deflate;"] {
        let (_c, resp) = upgrade(
            off.addr,
            "/parties/echo/neg",
            &format!("Sec-WebSocket-Extensions: {offer}\r\n"),
        );
        assert_eq!((resp.status, extensions(&resp)), (101, None), "{offer}");
    }
}

#[test]
fn echo_compressed_both_ways() {
    let srv = start(1);
    let mut c = ws(srv.addr, "/parties/echo/e", Some(OFFER));
    let msg = chat_json(3000);
    // A compressed message in one frame.
    let z = deflate(msg.as_bytes(), 6);
    c.send(&raw_frame(0x80 | 0x40 | 0x1, true, &z));
    let (compressed, got) = text_message(&mut c, 15);
    assert!(compressed, "a 3,000-byte JSON echo goes out compressed");
    assert_eq!(got, msg);
    // Fragmented: RSV1 on the first frame only; a ping in between is answered.
    let (a, b) = z.split_at(z.len() / 2);
    c.send(&raw_frame(0x40 | 0x1, true, a));
    c.send(&raw_frame(0x89, true, b"mid"));
    c.send(&raw_frame(0x80, true, b));
    assert_eq!(frame(&mut c), (0x8A, b"mid".to_vec()), "pong, uncompressed");
    assert_eq!(text_message(&mut c, 15), (true, msg.clone()));
    // An uncompressed message on the same connection is fine, and its echo is compressed.
    c.ws_send(OpCode::Text, msg.as_bytes());
    assert_eq!(text_message(&mut c, 15), (true, msg.clone()));
    // Below the threshold (128 bytes by default): plain, RSV1 clear.
    let short = chat_json(100);
    c.send(&raw_frame(
        0x80 | 0x40 | 0x1,
        true,
        &deflate(short.as_bytes(), 6),
    ));
    assert_eq!(text_message(&mut c, 15), (false, short));
    // Incompressible binary goes out plain too.
    let mut x = 0x9E37_79B9u32;
    let noise: Vec<u8> = (0..2000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    c.ws_send(OpCode::Binary, &noise);
    assert_eq!(frame(&mut c), (0x82, noise));
}

/// A compressed message sent on while it is delivered (the echo; a room's relay without a
/// durable write) goes out as the client's own compressed bytes: deflate does not run again.
/// Not when a recipient's window is smaller than the message (the client's stream may reach
/// 32 KiB back): then it is deflated with that window.
#[test]
fn a_relayed_message_is_the_clients_own_payload() {
    let srv = start_with(1, |c| c.persist = false);
    let msg = chat_json(3000);
    let z = deflate(msg.as_bytes(), 9);
    let mut c = ws(srv.addr, "/parties/echo/relay", Some(OFFER));
    c.send(&raw_frame(0x80 | 0x40 | 0x1, true, &z));
    assert_eq!(frame(&mut c), (0xC1, z.clone()), "echoed as sent");
    let mut w = ws(
        srv.addr,
        "/parties/echo/relay",
        Some("permessage-deflate; server_max_window_bits=9"),
    );
    w.send(&raw_frame(0xC1, true, &z));
    let (b0, body) = frame(&mut w);
    assert_eq!(b0, 0xC1);
    assert_ne!(body, z, "deflated again, with the 512-byte window");
    assert_eq!(inflate(&body, 9), msg.as_bytes());
    // The main party without durable history relays at once: the other compressing member
    // gets the sender's bytes, the plain member the message.
    let room = "/parties/main/relay";
    let mut sender = ws(srv.addr, room, Some(OFFER));
    let mut zipped = ws(srv.addr, room, Some(OFFER));
    let mut plain = ws(srv.addr, room, None);
    sender.send(&raw_frame(0xC1, true, &z));
    assert_eq!(frame(&mut zipped), (0xC1, z.clone()));
    assert_eq!(text_message(&mut plain, 15), (false, msg));
}

/// With durable history the `main` party broadcasts after the write, outside the delivery:
/// the message it held keeps its sender's compressed payload, and that is what the members
/// that compress get.
#[test]
fn a_message_held_for_its_write_is_relayed_as_sent() {
    let dir = TempDir::new("deflate-relay");
    let srv = start_with(1, |c| {
        c.persist = true;
        c.data_dir = dir.path().to_path_buf();
    });
    let msg = chat_json(3000);
    let z = deflate(msg.as_bytes(), 9);
    let room = "/parties/main/held";
    let mut sender = ws(srv.addr, room, Some(OFFER));
    let mut zipped = ws(srv.addr, room, Some(OFFER));
    let mut plain = ws(srv.addr, room, None);
    sender.send(&raw_frame(0xC1, true, &z));
    assert_eq!(frame(&mut zipped), (0xC1, z.clone()), "the sender's bytes");
    assert_eq!(text_message(&mut plain, 15), (false, msg.clone()));
    // A member whose window is 2^9 cannot take a stream that may reach 2^15 back: the one
    // compressed frame of the broadcast is then ours, deflated with that window.
    let mut small = ws(
        srv.addr,
        room,
        Some("permessage-deflate; server_max_window_bits=9"),
    );
    sender.send(&raw_frame(0xC1, true, &z));
    for c in [&mut zipped, &mut small] {
        let (b0, body) = frame(c);
        assert_eq!(b0, 0xC1);
        assert_ne!(body, z, "deflated with the 512-byte window instead");
        assert_eq!(inflate(&body, 9), msg.as_bytes());
    }
    assert_eq!(text_message(&mut plain, 15), (false, msg.clone()));
    // A message that did not come compressed is deflated by us, as before.
    plain.ws_send(OpCode::Text, msg.as_bytes());
    let (b0, body) = frame(&mut sender);
    assert_eq!(b0, 0xC1);
    assert_ne!(body, z);
    assert_eq!(inflate(&body, 9), msg.as_bytes());
}

#[test]
fn server_max_window_bits_is_honoured() {
    let srv = start(1);
    for bits in [9u8, 10, 12] {
        let offer = format!("permessage-deflate; server_max_window_bits={bits}");
        let mut c = ws(srv.addr, "/parties/echo/w", Some(&offer));
        // Random letters that repeat only 2^bits + 64 bytes apart: a compressor with a larger
        // window than agreed would refer back that far.
        let mut x = 0x2545_F491u32;
        let block: String = (0..(1 << bits) + 64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        let msg = block.repeat(8);
        c.ws_send(OpCode::Text, msg.as_bytes());
        // Inflating with exactly the agreed window: a stream that used more would fail.
        let (_, got) = text_message(&mut c, bits);
        assert_eq!(got, msg, "{bits} bits");
        let chat = chat_json(5000);
        c.ws_send(OpCode::Text, chat.as_bytes());
        assert_eq!(text_message(&mut c, bits), (true, chat), "{bits} bits");
    }
    // Window 8: accepted, and messages to that connection simply go out uncompressed.
    let mut c = ws(
        srv.addr,
        "/parties/echo/w",
        Some("permessage-deflate; server_max_window_bits=8"),
    );
    let chat = chat_json(5000);
    c.ws_send(OpCode::Text, chat.as_bytes());
    assert_eq!(text_message(&mut c, 8), (false, chat.clone()));
    // ...while what it sends compressed is inflated.
    c.send(&raw_frame(0xC1, true, &deflate(chat.as_bytes(), 6)));
    assert_eq!(text_message(&mut c, 8), (false, chat));
}

#[test]
fn broadcast_compressed_for_some_plain_for_others() {
    let srv = start(2);
    let room = "/parties/main/bcast";
    let mut sender = ws(srv.addr, room, None);
    let mut zipped = ws(srv.addr, room, Some(OFFER));
    let mut plain = ws(srv.addr, room, None);
    let mut small_window = ws(
        srv.addr,
        room,
        Some("permessage-deflate; server_max_window_bits=10"),
    );
    let msg = chat_json(2000);
    sender.ws_send(OpCode::Text, msg.as_bytes());
    assert_eq!(text_message(&mut zipped, 15), (true, msg.clone()));
    assert_eq!(text_message(&mut small_window, 10), (true, msg.clone()));
    assert_eq!(text_message(&mut plain, 15), (false, msg.clone()));
    // A compressing sender's message reaches the others the same way; HTTP POSTs too.
    zipped.send(&raw_frame(0xC1, true, &deflate(msg.as_bytes(), 1)));
    assert_eq!(text_message(&mut plain, 15), (false, msg.clone()));
    assert_eq!(text_message(&mut sender, 15), (false, msg.clone()));
    assert_eq!(text_message(&mut small_window, 10), (true, msg.clone()));
    let resp = srv.connect().request(post_message(room, &msg).as_bytes());
    assert_eq!(resp.status, 200);
    for (c, want) in [
        (&mut zipped, true),
        (&mut plain, false),
        (&mut sender, false),
    ] {
        assert_eq!(text_message(c, 15), (want, msg.clone()));
    }
    assert_eq!(text_message(&mut small_window, 10), (true, msg));
}

#[test]
fn rsv1_rules_and_the_inflated_size_limit() {
    let srv = start_with(1, |c| c.max_message_bytes = 100_000);
    let z = deflate(chat_json(1000).as_bytes(), 6);
    let cases: &[(Option<&str>, Vec<u8>, u16, &str)] = &[
        (
            None,
            raw_frame(0xC1, true, &z),
            1002,
            "RSV1 without the extension",
        ),
        (
            Some(OFFER),
            raw_frame(0xC9, true, b""),
            1002,
            "compressed ping",
        ),
        (
            Some(OFFER),
            raw_frame(0xC8, true, &[3, 232]),
            1002,
            "compressed close",
        ),
        (
            Some(OFFER),
            [
                raw_frame(0x41, true, &z[..10]),
                raw_frame(0xC0, true, &z[10..]),
            ]
            .concat(),
            1002,
            "continuation with RSV1",
        ),
        (
            Some(OFFER),
            raw_frame(0xA1, true, &z),
            1002,
            "RSV2 with the extension",
        ),
        (
            Some(OFFER),
            raw_frame(0xC1, true, &[0xFF, 0xFF, 0xFF]),
            1007,
            "not deflate",
        ),
        (
            Some(OFFER),
            raw_frame(0xC1, true, &deflate(&[0xC3; 500], 6)),
            1007,
            "invalid UTF-8 inside",
        ),
    ];
    for (offer, bytes, code, what) in cases {
        let mut c = ws(srv.addr, "/parties/echo/rules", *offer);
        c.send(bytes);
        assert_eq!(close_code(&mut c), *code, "{what}");
    }
    // A bomb: 16 MiB of zeros in about 16 KiB on the wire, under the wire limit, far over the
    // 100,000-byte limit once inflated.
    let bomb = deflate(&vec![0u8; 16 << 20], 9);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let mut c = ws(srv.addr, "/parties/echo/rules", Some(OFFER));
    c.send(&raw_frame(0xC2, true, &bomb));
    assert_eq!(close_code(&mut c), 1009);
    // Exactly at the limit is fine.
    let mut c = ws(srv.addr, "/parties/echo/rules", Some(OFFER));
    c.send(&raw_frame(0xC2, true, &deflate(&vec![7u8; 100_000], 6)));
    let (b0, payload) = frame(&mut c);
    assert_eq!(b0, 0xC2);
    assert_eq!(inflate(&payload, 15), vec![7u8; 100_000]);
}

/// Sends what it is told through the uncompressed API (`raw:`), the normal one otherwise.
struct Sender;

impl Party for Sender {
    fn on_message(&self, room: &mut Room, msg: Message<'_>, conn: &Connection) {
        let Message::Text(text) = msg else { return };
        match text.strip_prefix("raw:") {
            Some(rest) => {
                conn.send_uncompressed(OpCode::Text, rest.as_bytes());
                room.broadcast_uncompressed(OpCode::Text, rest.as_bytes(), &[conn.id()]);
            }
            None => {
                conn.send_text(text);
                room.broadcast_text(text, &[conn.id()]);
            }
        }
    }
}

#[test]
fn uncompressed_send_api_and_threshold() {
    let mut config = Config::test(1);
    config.compression_threshold = 1000;
    let srv = Server::builder()
        .config(config)
        .party("sender", || Sender)
        .start()
        .expect("server starts");
    let room = "/parties/sender/r?_pk=";
    let mut a = ws(srv.addr, &format!("{room}a"), Some(OFFER));
    let mut b = ws(srv.addr, &format!("{room}b"), Some(OFFER));
    let big = chat_json(3000);
    a.ws_send(OpCode::Text, big.as_bytes());
    assert_eq!(text_message(&mut a, 15), (true, big.clone()));
    assert_eq!(text_message(&mut b, 15), (true, big.clone()));
    a.ws_send(OpCode::Text, format!("raw:{big}").as_bytes());
    assert_eq!(text_message(&mut a, 15), (false, big.clone()));
    assert_eq!(text_message(&mut b, 15), (false, big));
    // 900 bytes: compressible, but under this server's threshold of 1,000.
    let mid = chat_json(900);
    a.ws_send(OpCode::Text, mid.as_bytes());
    assert_eq!(text_message(&mut a, 15), (false, mid.clone()));
    assert_eq!(text_message(&mut b, 15), (false, mid));
}

/// The binary's `--compression on|off` flag takes its value (and `off` declines every offer).
#[test]
fn the_compression_flag_turns_the_extension_off_and_on() {
    const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    for (value, agreed) in [("off", false), ("on", true)] {
        let (_server, addr) = spawn_binary(&["--compression", value]);
        let (_c, resp) = upgrade(addr, "/parties/echo/flag", OFFER);
        assert_eq!(resp.status, 101, "--compression {value}");
        assert_eq!(
            extensions(&resp).is_some(),
            agreed,
            "--compression {value}: {:?}",
            extensions(&resp)
        );
    }
}
