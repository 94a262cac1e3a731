//! The built-in `yjs` party: every room at `/parties/yjs/:room` is one Yjs document for
//! `YPartyKitProvider(host, room, doc, { party: "yjs" })`, with the server's persistence
//! (`--yjs-persist`, default snapshot).
//!
//! A client may ask to be read-only with the query parameter `readOnly=true` (a viewer that
//! must not write by mistake; the provider's `params` option sets it). That is a client's
//! choice, not access control: a party that must enforce it decides `read_only` itself, from
//! a token checked in `on_before_connect`, and calls [`super::on_connect`].
//!
//! `GET /parties/yjs/:room` answers the document's state as one Yjs update
//! (`application/octet-stream`; `Y.applyUpdate(doc, body)` reads it).

use super::{Options, Persistence};
use crate::{
    http::{Method, Response},
    party::{method_not_allowed, ConnectContext, Connection, Party, Reply, Request},
    room::Room,
    ws::{close, Message},
};

pub struct YjsParty {
    persist: Persistence,
}

impl YjsParty {
    pub fn new(persist: Persistence) -> Self {
        YjsParty { persist }
    }

    fn options(&self, read_only: bool) -> Options {
        Options {
            persist: self.persist,
            read_only,
            ..Options::default()
        }
    }
}

impl Party for YjsParty {
    fn on_connect(&self, room: &mut Room, conn: &Connection, ctx: &ConnectContext<'_>) {
        let read_only = ctx
            .request
            .query_param("readOnly")
            .is_some_and(|v| v == "true" || v == "1");
        super::on_connect(room, conn, &self.options(read_only));
    }

    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        if !super::on_message(room, msg, sender) {
            // Every connection of this party is a member; this one is not (its document was
            // never loaded for it): it cannot be served.
            sender.close(close::INTERNAL, "yjs: not a member of the document");
        }
    }

    fn on_close(&self, room: &mut Room, conn: &Connection, _code: u16, _reason: &str) {
        super::on_close(room, conn);
    }

    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        match req.method {
            Method::Get => Response {
                status: 200,
                content_type: "application/octet-stream",
                headers: Vec::new(),
                body: super::encode_state(room, &self.options(false)),
            }
            .into(),
            _ => method_not_allowed("GET").into(),
        }
    }
}
