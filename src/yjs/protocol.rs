//! The y-websocket wire format that `YPartyKitProvider` speaks, sans-IO: one binary WebSocket
//! message is one y-protocols message, a lib0 var-uint tag followed by its body.
//!
//! ```text
//! 0 sync       0 step 1   var-bytes  state vector   "what I have"
//!              1 step 2   var-bytes  update         "what you lack" (the answer to step 1)
//!              2 update   var-bytes  update         an edit, relayed to everyone else
//! 1 awareness  var-bytes  [var-uint n, n × (var-uint client, var-uint clock, var-string json)]
//! 2 auth       (server to client only; ignored when a client sends it)
//! 3 query awareness  (no body: "send me every awareness state")
//! ```
//!
//! Updates larger than 1 MB come in y-partykit's chunked form: a text frame
//! `y-pk-batch#{"id","type":"start","size","count"}`, `count` binary frames, and a matching
//! `"end"` marker; [`BatchMarker`] parses the markers (the party reassembles, `super`).
//!
//! Decoding uses yrs's lib0 reader, so lengths and var-ints are checked the same way yrs checks
//! an update; this file only knows the framing, never the CRDT.

use yrs::encoding::{
    read::{Cursor, Read},
    write::Write,
};

/// Top-level message tags (y-protocols, `y-partykit/provider`).
pub const MSG_SYNC: u8 = 0;
pub const MSG_AWARENESS: u8 = 1;
pub const MSG_AUTH: u8 = 2;
pub const MSG_QUERY_AWARENESS: u8 = 3;

/// Sync sub-tags (y-protocols/sync).
pub const SYNC_STEP1: u8 = 0;
pub const SYNC_STEP2: u8 = 1;
pub const SYNC_UPDATE: u8 = 2;

/// The prefix of y-partykit's chunking markers (text frames).
pub const BATCH_SENTINEL: &str = "y-pk-batch";

/// One decoded client message; the payloads borrow the WebSocket message.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Sync step 1: the client's encoded state vector.
    SyncStep1(&'a [u8]),
    /// Sync step 2: an update (the client's answer to our step 1).
    SyncStep2(&'a [u8]),
    /// An incremental update.
    Update(&'a [u8]),
    /// An encoded awareness update.
    Awareness(&'a [u8]),
    QueryAwareness,
    /// Auth (2) or a tag this protocol does not define: ignored, as y-partykit ignores them.
    Ignored(u64),
}

/// Why a message is not a y-protocols message. Mapped to close 1007 by the party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The message ends inside a var-int or a length-prefixed field.
    Truncated,
    /// A sync message whose sub-tag is not 0, 1 or 2.
    UnknownSyncStep,
}

impl ProtocolError {
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::Truncated => "yjs: truncated message",
            ProtocolError::UnknownSyncStep => "yjs: unknown sync message type",
        }
    }
}

/// Decodes one binary message.
///
/// # Errors
/// [`ProtocolError`] for a message that is cut short or has an unknown sync sub-tag.
pub fn decode(msg: &[u8]) -> Result<Incoming<'_>, ProtocolError> {
    let mut cur = Cursor::new(msg);
    let tag: u64 = cur.read_var().map_err(|_| ProtocolError::Truncated)?;
    match tag {
        t if t == u64::from(MSG_SYNC) => {
            let step: u64 = cur.read_var().map_err(|_| ProtocolError::Truncated)?;
            let body = read_buf(&mut cur)?;
            match step {
                s if s == u64::from(SYNC_STEP1) => Ok(Incoming::SyncStep1(body)),
                s if s == u64::from(SYNC_STEP2) => Ok(Incoming::SyncStep2(body)),
                s if s == u64::from(SYNC_UPDATE) => Ok(Incoming::Update(body)),
                _ => Err(ProtocolError::UnknownSyncStep),
            }
        }
        t if t == u64::from(MSG_AWARENESS) => Ok(Incoming::Awareness(read_buf(&mut cur)?)),
        t if t == u64::from(MSG_QUERY_AWARENESS) => Ok(Incoming::QueryAwareness),
        other => Ok(Incoming::Ignored(other)),
    }
}

fn read_buf<'a>(cur: &mut Cursor<'a>) -> Result<&'a [u8], ProtocolError> {
    // `Cursor::read_buf` ties the slice to the cursor's borrow; re-slice the message instead.
    let len: usize = cur.read_var().map_err(|_| ProtocolError::Truncated)?;
    let start = cur.next;
    let end = start.checked_add(len).ok_or(ProtocolError::Truncated)?;
    let body = cur.buf.get(start..end).ok_or(ProtocolError::Truncated)?;
    cur.next = end;
    Ok(body)
}

fn message(tag: u8, sub: Option<u8>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.write_var(tag);
    if let Some(sub) = sub {
        out.write_var(sub);
    }
    out.write_buf(body);
    out
}

/// `sync step 1` carrying our state vector.
pub fn sync_step1(state_vector: &[u8]) -> Vec<u8> {
    message(MSG_SYNC, Some(SYNC_STEP1), state_vector)
}

/// `sync step 2` carrying what the client lacks.
pub fn sync_step2(update: &[u8]) -> Vec<u8> {
    message(MSG_SYNC, Some(SYNC_STEP2), update)
}

/// An update, as relayed to the other members.
pub fn update(update: &[u8]) -> Vec<u8> {
    message(MSG_SYNC, Some(SYNC_UPDATE), update)
}

/// An awareness message around an encoded awareness update.
pub fn awareness(encoded: &[u8]) -> Vec<u8> {
    message(MSG_AWARENESS, None, encoded)
}

/// One of y-partykit's chunking markers: `y-pk-batch#{"id","type","size","count"}`.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
pub struct BatchMarker {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: BatchKind,
    pub size: usize,
    pub count: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchKind {
    Start,
    End,
}

impl BatchMarker {
    /// `None` if `text` is not a batch marker at all; `Some(Err)` if it starts like one but
    /// does not parse.
    pub fn parse(text: &str) -> Option<Result<BatchMarker, String>> {
        let json = text.strip_prefix(BATCH_SENTINEL)?.strip_prefix('#')?;
        Some(serde_json::from_str(json).map_err(|e| e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_message_kind() {
        let cases: &[(&[u8], Incoming<'_>)] = &[
            (&[0, 0, 2, 1, 2], Incoming::SyncStep1(&[1, 2])),
            (&[0, 1, 1, 9], Incoming::SyncStep2(&[9])),
            (&[0, 2, 2, 0, 0], Incoming::Update(&[0, 0])),
            (&[1, 3, 1, 2, 3], Incoming::Awareness(&[1, 2, 3])),
            (&[3], Incoming::QueryAwareness),
            (&[2, 0, 1, b'x'], Incoming::Ignored(2)),
            (&[99, 1, 2], Incoming::Ignored(99)),
        ];
        for (bytes, want) in cases {
            assert_eq!(&decode(bytes).unwrap(), want, "{bytes:?}");
        }
    }

    #[test]
    fn refuses_cut_and_unknown_messages() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[], ProtocolError::Truncated),
            (&[0], ProtocolError::Truncated),
            (&[0, 2], ProtocolError::Truncated),
            (&[0, 2, 5, 1, 2], ProtocolError::Truncated),
            (
                &[
                    0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                ],
                ProtocolError::Truncated,
            ),
            (&[1, 4, 0], ProtocolError::Truncated),
            (&[0x80], ProtocolError::Truncated),
            (&[0, 7, 0], ProtocolError::UnknownSyncStep),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes), Err(*want), "{bytes:?}");
        }
    }

    #[test]
    fn encoders_round_trip() {
        assert_eq!(
            decode(&sync_step1(&[4, 5])).unwrap(),
            Incoming::SyncStep1(&[4, 5])
        );
        assert_eq!(
            decode(&sync_step2(&[6])).unwrap(),
            Incoming::SyncStep2(&[6])
        );
        let big = vec![7u8; 300];
        assert_eq!(decode(&update(&big)).unwrap(), Incoming::Update(&big));
        assert_eq!(decode(&awareness(&[0])).unwrap(), Incoming::Awareness(&[0]));
    }

    #[test]
    fn batch_markers() {
        let m = BatchMarker::parse(r#"y-pk-batch#{"id":"a1","type":"start","size":10,"count":2}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            m,
            BatchMarker {
                id: "a1".into(),
                kind: BatchKind::Start,
                size: 10,
                count: 2
            }
        );
        assert!(BatchMarker::parse("hello").is_none());
        assert!(BatchMarker::parse(r#"y-pk-batch#{"type":"middle"}"#)
            .unwrap()
            .is_err());
    }
}
