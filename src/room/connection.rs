//! A room member: the connection handle parties get (`party::Connection` is `Rc<WsConn>`).
//!
//! Owns the connection's identity (id, uri), its tags and small state, and the party-facing
//! sends and closes, which only queue frames on the connection's [`Outbox`] (an IO primitive
//! that knows nothing of rooms). Does not own reading, the socket, or the closing handshake:
//! the runtime's WebSocket session (`runtime::ws_conn`) does.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use crate::{
    net::writer::{OutState, Outbox, SendStatus},
    ws::{self, close, deflate::OutFrames, OpCode},
};

/// A room member as parties see it: `id`, `uri`, `state`, tags, `send`, `close`.
pub type Connection = Rc<WsConn>;

/// Largest connection state, serialised (PartyKit's `setState` limit).
pub const MAX_STATE_BYTES: usize = 2048;

/// A room member: what the room (and anyone broadcasting) holds of a connection, and the
/// connection handle parties get (`party::Connection` is `Rc<WsConn>`).
///
/// Kept small, as there is one per idle connection: the uri and the id share one string (the
/// id is only a range of the uri when the uri holds it, as it does with `_pk`), and tags and
/// state (which most parties never use) live behind one pointer allocated on first use.
pub struct WsConn {
    /// Per-core creation order; the newest of several same-id connections wins a lookup.
    pub serial: u64,
    /// This connection's slot in its room's slab (its identity there).
    pub slot: Cell<usize>,
    pub outbox: Rc<Outbox>,
    /// The full upgrade URL (`http://<host><target>`), followed by the connection id (`_pk`
    /// from that URL, or a fresh UUID v4; not unique) unless the URL holds it already.
    /// `split` says which (see [`Split`]).
    text: Box<str>,
    split: u32,
    /// Tags and state, if the party set any.
    extra: RefCell<Option<Box<Extra>>>,
    /// The close code the server sent, 0 until it closes.
    pub(crate) sent_close: Cell<u16>,
    /// permessage-deflate: the window bits agreed in the handshake (8-15), or 0 when the
    /// connection did not negotiate it. All the compression state a connection has: the codec
    /// itself is the core's (`ws::deflate`).
    deflate: u8,
}

// One per open WebSocket, most of them idle: the deflate byte fits in what was padding.
const _: () = assert!(std::mem::size_of::<WsConn>() <= 64);

/// Where the uri and the id lie in a [`WsConn`]'s text, in 32 bits: with [`Split::INSIDE`]
/// set, the text is the uri alone and the id is the range `start..start + len` of it (`start`
/// in the low 16 bits, `len` in the next 15); otherwise the id follows the uri, whose length
/// this is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Split(u32);

impl Split {
    const INSIDE: u32 = 1 << 31;

    /// The id is somewhere in the uri (as `_pk`'s value is), at an offset and of a length
    /// the 32 bits hold.
    fn inside(uri: &str, id: &str) -> Option<Split> {
        let start = u16::try_from(uri.find(id)?).ok()?;
        let len = u32::try_from(id.len()).ok().filter(|&l| l < 1 << 15)?;
        Some(Split(Split::INSIDE | len << 16 | u32::from(start)))
    }

    /// The id follows a uri of `uri_len` bytes. A uri is a request target and a host, far
    /// below 2 GiB.
    fn after(uri_len: usize) -> Split {
        Split(
            u32::try_from(uri_len)
                .unwrap_or(u32::MAX)
                .min(Split::INSIDE - 1),
        )
    }

    /// The uri's length in a text of `text_len` bytes.
    fn uri_len(self, text_len: usize) -> usize {
        if self.0 & Split::INSIDE != 0 {
            text_len
        } else {
            self.0 as usize
        }
    }

    /// The id's range in a text of `text_len` bytes.
    fn id(self, text_len: usize) -> (usize, usize) {
        if self.0 & Split::INSIDE != 0 {
            let start = (self.0 & 0xffff) as usize;
            (start, start + (self.0 >> 16 & 0x7fff) as usize)
        } else {
            (self.0 as usize, text_len)
        }
    }
}

#[derive(Default)]
struct Extra {
    /// From the party's `connection_tags`, set once before `on_connect`.
    tags: Box<[Box<str>]>,
    /// `set_state`'s value, as JSON.
    state: Option<Box<str>>,
}

impl WsConn {
    /// A connection that is not (yet) attached to a socket.
    pub(crate) fn new(id: Box<str>, serial: u64, uri: Box<str>, outbox: Rc<Outbox>) -> Self {
        let (text, split) = match Split::inside(&uri, &id) {
            Some(split) => (uri, split),
            None => {
                let mut text = String::with_capacity(uri.len() + id.len());
                text.push_str(&uri);
                text.push_str(&id);
                (text.into_boxed_str(), Split::after(uri.len()))
            }
        };
        WsConn {
            serial,
            slot: Cell::new(usize::MAX),
            outbox,
            text,
            split: split.0,
            extra: RefCell::new(None),
            sent_close: Cell::new(0),
            deflate: 0,
        }
    }

    /// The same connection, with permessage-deflate agreed at `window_bits` (8-15; 0: off).
    pub(crate) fn with_deflate(mut self, window_bits: u8) -> Self {
        self.deflate = window_bits;
        self
    }

    /// The permessage-deflate window bits agreed with this connection (8-15), or 0 if it did
    /// not negotiate compression.
    pub fn deflate_window(&self) -> u8 {
        self.deflate
    }

    /// The connection id (`_pk`, or a UUID v4).
    pub fn id(&self) -> &str {
        let (start, end) = Split(self.split).id(self.text.len());
        &self.text[start..end]
    }

    /// The full upgrade URL with its query, e.g. `http://127.0.0.1:1999/parties/main/r?_pk=a`,
    /// as this server saw it: `http://` and the `Host` header, also behind a TLS proxy.
    pub fn uri(&self) -> &str {
        &self.text[..Split(self.split).uri_len(self.text.len())]
    }

    /// The tags from the party's `connection_tags`.
    pub fn tags(&self) -> Vec<String> {
        self.extra
            .borrow()
            .as_ref()
            .map_or_else(Vec::new, |e| e.tags.iter().map(|t| t.to_string()).collect())
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.extra
            .borrow()
            .as_ref()
            .is_some_and(|e| e.tags.iter().any(|t| &**t == tag))
    }

    pub(crate) fn set_tags(&self, tags: Vec<String>) {
        if tags.is_empty() && self.extra.borrow().is_none() {
            return;
        }
        let mut extra = self.extra.borrow_mut();
        extra.get_or_insert_with(Box::default).tags =
            tags.into_iter().map(String::into_boxed_str).collect();
    }

    /// The state set by [`WsConn::set_state`], if any and if it deserialises as `T`.
    pub fn state<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        let extra = self.extra.borrow();
        serde_json::from_str(extra.as_ref()?.state.as_deref()?).ok()
    }

    /// Replaces the connection's small state (PartyKit's `setState`): any serialisable value of
    /// at most [`MAX_STATE_BYTES`] as JSON.
    ///
    /// # Errors
    /// The value does not serialise, or is too large; the old state is kept.
    pub fn set_state<T: serde::Serialize>(&self, value: &T) -> Result<(), String> {
        let json = serde_json::to_string(value).map_err(|e| e.to_string())?;
        if json.len() > MAX_STATE_BYTES {
            return Err(format!(
                "connection state is {} bytes as JSON, over the {MAX_STATE_BYTES}-byte limit",
                json.len()
            ));
        }
        self.extra
            .borrow_mut()
            .get_or_insert_with(Box::default)
            .state = Some(json.into_boxed_str());
        Ok(())
    }

    /// Clears the connection's state.
    pub fn clear_state(&self) {
        if let Some(extra) = self.extra.borrow_mut().as_mut() {
            extra.state = None;
        }
    }

    /// Queues a frame; over the bound, closes the connection with 1008.
    pub fn send_frame(&self, frame: Rc<[u8]>) {
        if self.outbox.push(frame) == SendStatus::Backpressure {
            tracing::warn!(conn = %self.id(), queued = self.outbox.queued_bytes(),
                "outbound queue over its bound: closing with 1008");
            if let Some(m) = self.outbox.metrics() {
                m.ws_protocol_close(close::POLICY);
            }
            self.close_with(close::POLICY, "Outbound queue full", true);
        }
    }

    /// Sends a message as one frame: compressed if this connection negotiated
    /// permessage-deflate, the message is a data message at least `--compression-threshold`
    /// bytes long, and it shrinks; plain otherwise.
    pub fn send(&self, opcode: OpCode, payload: &[u8]) {
        let frame = OutFrames::new(opcode, payload, self.deflate).frame_for(self.deflate);
        self.send_frame(frame);
    }

    /// Sends a message as one frame, never compressed (say, bytes that are compressed already:
    /// deflate would spend CPU to make them no smaller).
    pub fn send_uncompressed(&self, opcode: OpCode, payload: &[u8]) {
        self.send_frame(ws::encode_frame(opcode, payload).into());
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) {
        self.send(OpCode::Text, text.as_bytes());
    }

    /// Sends a binary message.
    pub fn send_binary(&self, bytes: &[u8]) {
        self.send(OpCode::Binary, bytes);
    }

    /// Closes the connection with `code` and `reason` (after what is already queued). A code a
    /// server may not send (RFC 6455 §7.4: only 1000-1003, 1007-1014 and 3000-4999) becomes
    /// 1000 with a log line; the reason is cut to the 123 bytes a close frame holds.
    pub fn close(&self, code: u16, reason: &str) {
        let code = if close::is_valid_wire_code(code) {
            code
        } else {
            tracing::warn!(conn = %self.id(), code, "close with a code a server may not send: using 1000");
            close::NORMAL
        };
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.close_with(code, &reason[..end], false);
    }

    /// Starts a server-side close with `code`. With `discard_pending`, queued frames the peer
    /// has not started receiving are dropped so the close frame is next.
    pub(crate) fn close_with(&self, code: u16, reason: &str, discard_pending: bool) {
        if self.sent_close.get() == 0 && self.outbox.state() == OutState::Open {
            self.sent_close.set(code);
        }
        self.outbox
            .close_with(ws::encode_close(code, reason).into(), discard_pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: &str, uri: &str) -> WsConn {
        WsConn::new(id.into(), 0, uri.into(), Rc::new(Outbox::new(1 << 20)))
    }

    #[test]
    fn the_id_is_a_range_of_the_uri_when_the_uri_holds_it() {
        let uri = "http://h/parties/main/r?_pk=3f1c&x=1";
        let c = conn("3f1c", uri);
        assert_eq!((c.uri(), c.id()), (uri, "3f1c"));
        assert_eq!(c.text.len(), uri.len(), "no second copy of the id");

        let c = conn("", "http://h/parties/main/r?_pk=");
        assert_eq!((c.uri(), c.id()), ("http://h/parties/main/r?_pk=", ""));
    }

    #[test]
    fn otherwise_the_id_follows_the_uri() {
        let id = "6a0e2f3c-7d1b-4f8e-9a2b-0c1d2e3f4a5b";
        let uri = "http://h/parties/main/r";
        let c = conn(id, uri);
        assert_eq!((c.uri(), c.id()), (uri, id));
        // Past what the 16-bit offset holds, or longer than the 15-bit length: appended.
        let far = format!("http://h/parties/main/r?pad={}&_pk=abc", "p".repeat(70_000));
        let c = conn("abc", &far);
        assert_eq!((c.uri(), c.id()), (far.as_str(), "abc"));
        assert_eq!(c.text.len(), far.len() + 3);
        let long = "i".repeat(40_000);
        let uri = format!("http://h/parties/main/r?_pk={long}");
        let c = conn(&long, &uri);
        assert_eq!((c.uri(), c.id()), (uri.as_str(), long.as_str()));
    }
}
