//! Shared by the two WebSocket decoder targets: owned copies of messages, and feeding a stream
//! to a fresh `Decoder` in pieces.

use partyring::ws::{Decoder, Message, WsError};

/// An owned copy of a `Message`, so messages from different runs can be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owned {
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

/// Feeds `stream` to a new decoder cut at `cuts` (sorted, each ≤ `stream.len()`), stopping at
/// the first error, and returns the messages delivered and the error, if any.
///
/// Also checks per-call rules: nothing is delivered after a Close; after an error, `feed` keeps
/// returning the same error and delivers nothing; a data message is within `max`.
#[allow(dead_code)]
pub fn decode(max: usize, stream: &[u8], cuts: &[usize]) -> (Vec<Owned>, Option<WsError>) {
    decode_with(max, false, stream, cuts)
}

/// [`decode`] for a connection that negotiated permessage-deflate (`deflate`): RSV1 frames are
/// inflated, and `max` limits the inflated size.
pub fn decode_with(
    max: usize,
    deflate: bool,
    stream: &[u8],
    cuts: &[usize],
) -> (Vec<Owned>, Option<WsError>) {
    let mut dec = Decoder::with_deflate(max, deflate);
    let mut buf = stream.to_vec();
    let mut msgs: Vec<Owned> = Vec::new();
    let mut start = 0;
    let mut err = None;
    for end in cuts.iter().copied().chain([buf.len()]) {
        let end = end.max(start);
        let mut on_msg = |m: Message<'_>| {
            assert!(
                !matches!(msgs.last(), Some(Owned::Close(..))),
                "message after a Close: {m:?}"
            );
            if let Message::Text(s) = m {
                assert!(s.len() <= max, "text of {} over max {max}", s.len());
            }
            if let Message::Binary(b) = m {
                assert!(b.len() <= max, "binary of {} over max {max}", b.len());
            }
            msgs.push(m.into());
        };
        let res = dec.feed(&mut buf[start..end], &mut on_msg);
        start = end;
        if let Err(e) = res {
            err = Some(e);
            break;
        }
        if dec.is_closed() {
            assert!(
                matches!(msgs.last(), Some(Owned::Close(..))),
                "closed without a Close"
            );
        }
    }
    if let Some(e) = err {
        let n = msgs.len();
        let mut none = |m: Message<'_>| panic!("delivered after error {e:?}: {m:?}");
        assert_eq!(dec.feed(&mut [0x81, 0x80, 0, 0, 0, 0], &mut none), Err(e));
        assert_eq!(dec.feed(&mut [], &mut none), Err(e));
        assert_eq!(msgs.len(), n);
    }
    (msgs, err)
}

/// Sorted cut points in `0..=len` from raw fuzz values.
pub fn cuts(raw: impl IntoIterator<Item = usize>, len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = raw.into_iter().map(|c| c % (len + 1)).collect();
    c.sort_unstable();
    c
}
