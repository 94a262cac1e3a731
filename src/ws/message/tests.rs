//! Unit tests of the decoder (`message.rs`), in their own files because they outgrew it. This
//! is `message::tests`, so it can look at the decoder's private buffers; it holds the helpers
//! (an owned `Message`, client frame builders, feeding whole or one byte at a time) and the
//! test groups below use them through `super::*`.
//!
//! - `rules`: tables of every error rule (fed whole and one byte at a time), the accepted
//!   shapes, and the Close payload.
//! - `streaming`: what arrives in pieces (UTF-8 failing early, the size limit from the header,
//!   the zero-copy path, buffer release, idle state) and the proptest properties: any chunking
//!   decodes like the whole stream; server encoding, client masking and decoding round-trip.
//! - `deflate`: permessage-deflate messages through the decoder.

use super::*;
use crate::ws::frame::{encode_client_frame, encode_close, encode_frame, header_len};
use proptest::prelude::*;

const M: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
const BIG: usize = 1 << 20;

/// An owned copy of a `Message`, so results can outlive the callback and be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

impl From<Message<'_>> for Owned {
    fn from(m: Message<'_>) -> Self {
        match m {
            Message::Text(s) => Owned::Text(s.to_owned()),
            Message::Binary(b) => Owned::Binary(b.to_vec()),
            Message::Ping(b) => Owned::Ping(b.to_vec()),
            Message::Pong(b) => Owned::Pong(b.to_vec()),
            Message::Close { code, reason } => Owned::Close(code, reason.to_owned()),
        }
    }
}

fn text(s: &str) -> Owned {
    Owned::Text(s.to_owned())
}

/// A masked client frame with the test key.
fn cf(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    encode_client_frame(fin, op, payload, M)
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// Feeds `chunks` one by one (each from a fresh copy, as a socket read would be), collecting
/// messages until the first error.
fn feed_chunks(dec: &mut Decoder, chunks: &[&[u8]]) -> (Vec<Owned>, Result<(), WsError>) {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut buf = chunk.to_vec();
        let res = dec.feed(&mut buf, &mut |m| out.push(Owned::from(m)));
        if res.is_err() {
            return (out, res);
        }
    }
    (out, Ok(()))
}

fn decode_whole(max: usize, stream: &[u8]) -> (Vec<Owned>, Result<(), WsError>) {
    feed_chunks(&mut Decoder::new(max), &[stream])
}

fn decode_bytewise(max: usize, stream: &[u8]) -> (Vec<Owned>, Result<(), WsError>) {
    let chunks: Vec<&[u8]> = stream.chunks(1).collect();
    feed_chunks(&mut Decoder::new(max), &chunks)
}

/// A frame header with arbitrary bits, for frames `encode_client_frame` would not produce.
fn raw(b0: u8, b1: u8, ext: &[u8]) -> Vec<u8> {
    let mut v = vec![b0, b1];
    v.extend_from_slice(ext);
    v.extend_from_slice(&M);
    v
}

mod deflate;
mod rules;
mod streaming;
