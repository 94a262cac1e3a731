//! The parties a server serves ([`PartySet`]: recipes shared by every core) and one core's
//! instances of them ([`Parties`]), which is also the one place where a party's panic is
//! contained.
//!
//! Owns: the party list by name, calling each hook, the panic guard, and the output gate for
//! HTTP answers (an answer waits for the storage writes its handler made). Does not own what
//! the parties do, or which parties the binary serves (`runtime` builds that set).

use std::{
    panic::{self, AssertUnwindSafe},
    rc::Rc,
    sync::Arc,
};

use super::{
    storage_unavailable, Before, ConnectContext, Connection, CronEvent, CronJob, FetchHandler,
    Party, PartyFactory, Reply, Request, MAX_TAGS, MAX_TAG_BYTES,
};
use crate::{
    config::Config,
    http::Response,
    room::{Context, Room},
    ws::{self, Message},
};

/// The parties a server serves, by name, as recipes shared by every core, and the server-level
/// handlers beside them (`on_fetch`, crons).
#[derive(Clone, Default)]
pub struct PartySet {
    entries: Vec<(Box<str>, PartyFactory)>,
    on_fetch: Option<FetchHandler>,
    crons: Vec<CronJob>,
}

impl PartySet {
    /// Adds (or replaces) the party `name`.
    #[must_use]
    pub fn with<P: Party + 'static>(
        self,
        name: &str,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        self.with_configured(name, move |_| make())
    }

    /// Adds (or replaces) the party `name`, made from the server's config.
    #[must_use]
    pub fn with_configured<P: Party + 'static>(
        mut self,
        name: &str,
        make: impl Fn(&Config) -> P + Send + Sync + 'static,
    ) -> Self {
        let factory: PartyFactory = Arc::new(move |config| Box::new(make(config)));
        match self.entries.iter_mut().find(|(n, _)| &**n == name) {
            Some(entry) => entry.1 = factory,
            None => self.entries.push((name.into(), factory)),
        }
        self
    }

    /// Sets the server-level `on_fetch` handler (replacing any earlier one).
    #[must_use]
    pub fn with_on_fetch(mut self, handler: FetchHandler) -> Self {
        self.on_fetch = Some(handler);
        self
    }

    /// Adds a cron.
    #[must_use]
    pub fn with_cron(mut self, job: CronJob) -> Self {
        self.crons.push(job);
        self
    }

    /// One core's instances.
    pub fn instantiate(&self, config: &Config) -> Parties {
        Parties {
            list: self
                .entries
                .iter()
                .map(|(name, make)| (Rc::from(&**name), make(config)))
                .collect(),
            on_fetch: self.on_fetch.clone(),
            crons: self.crons.clone(),
        }
    }
}

/// One core's party instances, and the one place where a party's panic is contained: a panic
/// fails only the request (500) or the connection (close 1011) that caused it, is logged, and
/// leaves the room, its other members and every other room working.
pub struct Parties {
    list: Vec<(Rc<str>, Box<dyn Party>)>,
    on_fetch: Option<FetchHandler>,
    /// Run by core 0 only (see `runtime/cron.rs`).
    crons: Vec<CronJob>,
}

impl Parties {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The index of the party called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|(n, _)| &**n == name)
    }

    pub fn name(&self, idx: usize) -> &Rc<str> {
        &self.list[idx].0
    }

    fn guarded<R>(&self, idx: usize, what: &str, f: impl FnOnce(&dyn Party) -> R) -> Option<R> {
        let party = &*self.list[idx].1;
        match panic::catch_unwind(AssertUnwindSafe(|| f(party))) {
            Ok(r) => Some(r),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                tracing::error!(party = %self.list[idx].0, handler = what, panic = %msg, "party handler panicked");
                None
            }
        }
    }

    /// `on_before_connect` (`upgrade`) or `on_before_request`; a panic answers 500.
    pub fn before(&self, idx: usize, upgrade: bool, req: &Request<'_>) -> Before {
        let (what, r) = if upgrade {
            (
                "on_before_connect",
                self.guarded(idx, "on_before_connect", |p| p.on_before_connect(req)),
            )
        } else {
            (
                "on_before_request",
                self.guarded(idx, "on_before_request", |p| p.on_before_request(req)),
            )
        };
        r.unwrap_or_else(|| {
            Before::Respond(Response::text(
                500,
                format!("Internal server error in {what}"),
            ))
        })
    }

    /// `on_start`; a panic is logged (the room is used anyway, as PartyKit retries nothing).
    pub fn start(&self, idx: usize, room: &mut Room) {
        self.guarded(idx, "on_start", |p| p.on_start(room));
    }

    /// `on_request`, or 500 if it panics. The output gate for HTTP: if the handler wrote to
    /// storage, its answer leaves only once those writes are durable, and if one of them fails
    /// the answer is replaced by [`storage_unavailable`] (a Durable Object's output gate does
    /// the same). A handler that wrote nothing is not delayed.
    pub fn request(&self, idx: usize, room: &mut Room, req: &Request<'_>) -> Reply {
        let mark = room.write_mark();
        let reply = self
            .guarded(idx, "on_request", |p| p.on_request(room, req))
            .unwrap_or_else(|| Response::text(500, "Internal server error").into());
        let Some(writes) = room.writes_since(mark) else {
            return reply;
        };
        Reply::later(async move {
            let response = match reply {
                Reply::Now(r) => r,
                Reply::Later(f) => f.await,
            };
            match writes.await {
                Ok(()) => response,
                Err(e) => storage_unavailable(&e),
            }
        })
    }

    /// `connection_tags` (checked) then `on_connect`; a panic or bad tags close the connection
    /// with 1011.
    pub fn connect(
        &self,
        idx: usize,
        room: &mut Room,
        conn: &Connection,
        ctx: &ConnectContext<'_>,
    ) {
        let Some(tags) = self.guarded(idx, "connection_tags", |p| p.connection_tags(conn, ctx))
        else {
            conn.close_with(ws::close::INTERNAL, "Internal server error", false);
            return;
        };
        if let Err(reason) = check_tags(&tags) {
            tracing::warn!(party = %self.list[idx].0, conn = %conn.id(), reason, "connection_tags broke the limits: closing with 1011");
            conn.close_with(ws::close::INTERNAL, reason, false);
            return;
        }
        conn.set_tags(tags);
        if self
            .guarded(idx, "on_connect", |p| p.on_connect(room, conn, ctx))
            .is_none()
        {
            conn.close_with(ws::close::INTERNAL, "Internal server error", false);
        }
    }

    /// `on_message`; a panic closes the sender with 1011.
    pub fn message(&self, idx: usize, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        if self
            .guarded(idx, "on_message", |p| p.on_message(room, msg, sender))
            .is_none()
        {
            sender.close_with(ws::close::INTERNAL, "Internal server error", false);
        }
    }

    /// `on_close`; a panic is logged.
    pub fn close(&self, idx: usize, room: &mut Room, conn: &Connection, code: u16, reason: &str) {
        self.guarded(idx, "on_close", |p| p.on_close(room, conn, code, reason));
    }

    /// `on_error`; a panic is logged.
    pub fn error(&self, idx: usize, room: &mut Room, conn: &Connection, error: &str) {
        self.guarded(idx, "on_error", |p| p.on_error(room, conn, error));
    }

    /// `on_alarm`; a panic is logged.
    pub fn alarm(&self, idx: usize, room: &mut Room) {
        self.guarded(idx, "on_alarm", |p| p.on_alarm(room));
    }

    /// `on_cron` of every party; a panic is logged and the other parties still run.
    pub fn cron(&self, cron: &CronEvent) {
        for idx in 0..self.list.len() {
            self.guarded(idx, "on_cron", |p| p.on_cron(cron));
        }
    }

    /// The server-level `on_fetch` handler's answer; `None` if there is none or it passed. A
    /// panic answers 500.
    pub fn fetch(&self, req: &Request<'_>, lobby: &Context) -> Option<Reply> {
        let handler = self.on_fetch.as_ref()?;
        match panic::catch_unwind(AssertUnwindSafe(|| handler(req, lobby))) {
            Ok(reply) => reply,
            Err(_) => {
                tracing::error!(target = req.target, "on_fetch panicked");
                Some(Response::text(500, "Internal server error").into())
            }
        }
    }

    /// The server's crons.
    pub fn crons(&self) -> &[CronJob] {
        &self.crons
    }
}

fn check_tags(tags: &[String]) -> Result<(), &'static str> {
    if tags.len() > MAX_TAGS {
        return Err("Too many connection tags (at most 9)");
    }
    if tags.iter().any(|t| t.is_empty() || t.len() > MAX_TAG_BYTES) {
        return Err("Connection tags must be 1 to 256 bytes");
    }
    Ok(())
}
