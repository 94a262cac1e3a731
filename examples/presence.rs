//! A presence counter kept by one party and updated by another (party-to-party fetch).
//!
//! ```sh
//! cargo run --release --example presence      # PORT=1999 by default
//! ```
//!
//! - `room`: WebSocket rooms, `ws://127.0.0.1:1999/parties/room/<name>`. Text messages are
//!   broadcast to the others in the room. Whenever someone joins or leaves, the room tells the
//!   presence party its new head count.
//! - `presence`: one room, `global`, holds the map `{"<room>": <count>, ..}` of every non-empty
//!   room. `GET http://127.0.0.1:1999/parties/presence/global` answers it (with an `X-Core`
//!   header saying which core served it); a WebSocket to `/parties/presence/global` gets the map
//!   on connect and again on every change. Only the `room` party may change it: an outside
//!   `POST` is refused by `on_before_request`. An in-node party fetch skips that hook; with
//!   several nodes behind a load balancer (`PARTYRING_FETCH_ENTRY`, docs/deploy.md) the fetch
//!   is a plain HTTP request through the balancer and the hook runs, so the `room` party proves
//!   itself with a shared key header (`PRESENCE_KEY`, the same on every node).
//!
//! Every room lives on one core, chosen by a hash of party and room name. `presence/global`
//! is one room, so with N cores most `room/<name>` rooms live on another core than the
//! presence room. `room.party_room("presence", "global").fetch(..)` handles both cases: a
//! direct call when the presence room is on the same core, otherwise a message to its core's
//! inbox and the response back on a channel. The log lines on stderr show which core
//! reported to which.

use std::collections::BTreeMap;

use partyring::{
    party::{method_not_allowed, Before, ConnectContext, Connection, Party, Reply, Request},
    room::{FetchRequest, Room},
    shard, Config, Message, Method, Response, Server,
};
use serde::{Deserialize, Serialize};

/// The presence party's one room.
const PRESENCE_ROOM: &str = "global";

/// Which core (OS thread) this handler runs on: `partyring-core-<k>`.
fn this_core() -> String {
    std::thread::current()
        .name()
        .unwrap_or("?")
        .trim_start_matches("partyring-")
        .to_owned()
}

/// The body of a presence update: room `room` now has `count` connections. An absolute count
/// (not +1/-1) so that a lost update is corrected by the next one, and a sequence number so a
/// late one is ignored: updates about one room all come from that room's core, but through a
/// load balancer each is its own connection and two can overtake each other.
#[derive(Serialize, Deserialize)]
struct Update {
    room: String,
    count: usize,
    seq: u64,
}

/// The header the `room` party's updates carry (see the module note).
const KEY_HEADER: &str = "X-Presence-Key";

/// The key shared by the nodes: `PRESENCE_KEY`, or a fixed demo value.
fn presence_key() -> String {
    std::env::var("PRESENCE_KEY").unwrap_or_else(|_| "presence-demo-key".to_owned())
}

thread_local! {
    static LAST_SEQ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Increasing on this core, and across restarts and nodes as far as the clocks agree: the
/// time in nanoseconds, bumped past the last value handed out.
fn next_seq() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    LAST_SEQ.with(|last| {
        let seq = now.max(last.get() + 1);
        last.set(seq);
        seq
    })
}

// ---- the `room` party ----

struct ChatRoom;

impl ChatRoom {
    /// Tells the presence room how many connections this room has now.
    fn report(&self, room: &Room) {
        let update = Update {
            room: room.id().to_owned(),
            count: room.connections().count(),
            seq: next_seq(),
        };
        let body = serde_json::to_vec(&update).expect("serialises");
        // `fetch` returns a future: it does nothing until polled. A handler cannot wait (it
        // holds the room), so spawn the future as a task on this core's monoio runtime; the
        // handler returns at once, and the task runs on the next turn of the event loop.
        let response = room
            .party_room("presence", PRESENCE_ROOM)
            .fetch(FetchRequest::post(body).header(KEY_HEADER, presence_key()));
        let from = this_core();
        monoio::spawn(async move {
            let resp = response.await;
            let to = resp
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("x-core"))
                .map_or("?", |(_, v)| v.as_str());
            let hop = if to == from {
                "same core"
            } else {
                "cross-core"
            };
            tracing::info!(
                room = %update.room, count = update.count, status = resp.status,
                "presence update: {from} -> {to} ({hop})"
            );
        });
    }
}

impl Party for ChatRoom {
    fn on_connect(&self, room: &mut Room, conn: &Connection, _ctx: &ConnectContext<'_>) {
        conn.send_text(&format!(
            "welcome to room {} (served by {})",
            room.id(),
            this_core()
        ));
        self.report(room);
    }

    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        if let Message::Text(text) = msg {
            room.broadcast_text(text, &[sender.id()]);
        }
    }

    /// The connection has already left `room.connections()`, so the count is the new one.
    fn on_close(&self, room: &mut Room, _conn: &Connection, _code: u16, _reason: &str) {
        self.report(room);
    }
}

// ---- the `presence` party ----

/// Room name -> (connections, seq of the update that set it), kept with `room.set_state`
/// (memory only, on purpose: after a restart every WebSocket is gone, so stored counts would be
/// wrong). Rooms at 0 stay as tombstones so a late update cannot bring them back. A room with
/// state stays loaded while nobody is connected to it.
#[derive(Default)]
struct Counts(BTreeMap<String, (usize, u64)>);

struct Presence;

fn counts(room: &mut Room) -> &mut BTreeMap<String, (usize, u64)> {
    if room.state_ref::<Counts>().is_none() {
        room.set_state(Counts::default());
    }
    &mut room.state_mut::<Counts>().expect("just set").0
}

fn counts_json(room: &mut Room) -> String {
    let live: BTreeMap<&String, usize> = counts(room)
        .iter()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(k, (n, _))| (k, *n))
        .collect();
    serde_json::to_string(&live).expect("a map of counts serialises")
}

impl Party for Presence {
    /// Outside requests may only read. In-node party fetches do not run this hook; fetches
    /// through a load balancer do, and carry the shared key.
    fn on_before_request(&self, req: &Request<'_>) -> Before {
        let keyed = req
            .header(KEY_HEADER)
            .is_some_and(|k| k.as_bytes() == presence_key().as_bytes());
        match req.method {
            Method::Get => Before::Continue,
            _ if keyed => Before::Continue,
            _ => Before::Respond(Response::text(403, "presence is read-only")),
        }
    }

    fn on_connect(&self, room: &mut Room, conn: &Connection, _ctx: &ConnectContext<'_>) {
        conn.send_text(&counts_json(room));
    }

    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        let response = match req.method {
            Method::Get => Response::json(200, counts_json(room).into_bytes()),
            Method::Post => match serde_json::from_slice::<Update>(req.body) {
                Ok(update) => {
                    let map = counts(room);
                    let newer = map
                        .get(&update.room)
                        .is_none_or(|(_, seq)| update.seq > *seq);
                    if newer {
                        map.insert(update.room, (update.count, update.seq));
                    }
                    // Subscribers (WebSockets to this room) get the new map.
                    let json = counts_json(room);
                    room.broadcast_text(&json, &[]);
                    Response::json(200, json.into_bytes())
                }
                Err(e) => Response::text(400, format!("bad update: {e}")),
            },
            _ => method_not_allowed("GET, POST"),
        };
        response.header("X-Core", this_core()).into()
    }
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = example_config("presence");
    let cores = config.threads;
    let server = Server::builder()
        .config(config)
        .party("room", || ChatRoom)
        .party("presence", || Presence)
        .start()?;
    println!("listening on http://{}", server.addr);
    // Where rooms live is a pure function of (party, room, cores): print a few.
    let owner = |party, room| shard::owner(party, room, cores);
    println!(
        "  presence/{PRESENCE_ROOM} lives on core-{} of {cores}",
        owner("presence", PRESENCE_ROOM)
    );
    for name in ["a", "b", "c", "d"] {
        println!("  room/{name} lives on core-{}", owner("room", name));
    }
    println!(
        "  ws://{0}/parties/room/<name>   GET http://{0}/parties/presence/{PRESENCE_ROOM}",
        server.addr
    );
    server.wait();
    Ok(())
}

/// `Config::new()` defaults, with the port from `PORT` (default 1999) and this example's own
/// data directory, so it never mixes its storage with the `partyring` binary's `.partyring/`.
fn example_config(name: &str) -> Config {
    let mut config = Config::new();
    config.port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1999);
    config.data_dir = format!(".partyring-example-{name}").into();
    // Several nodes behind a load balancer: party fetches go through it (docs/deploy.md).
    config.fetch_entry = std::env::var("PARTYRING_FETCH_ENTRY")
        .ok()
        .and_then(|a| a.parse().ok());
    config
}
