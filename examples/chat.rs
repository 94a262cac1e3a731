//! A chat room whose history survives a restart.
//!
//! ```sh
//! cargo run --release --example chat          # PORT=1999 by default
//! ```
//!
//! - WebSocket `ws://127.0.0.1:1999/parties/chat/<room>`: on connect you get
//!   `{"type":"history","messages":[{"from":..,"text":..},..]}` (the last 100 messages); every
//!   text message you send is stored and, once it is on disk, broadcast to the room (you
//!   included) as `{"type":"message","seq":N,"from":<your connection id>,"text":..}`; then you
//!   alone get `{"type":"saved","seq":N}` (or an error if it could not be stored).
//! - `GET http://127.0.0.1:1999/parties/chat/<room>` answers the same history as a JSON array.
//!
//! The history lives in the room's durable storage under `msg/<seq as 20 digits>` (so key order
//! is message order) as JSON `{"from":..,"text":..}`, in `./.partyring-example-chat`: stop the
//! example, start it again, and the history is still there.

use partyring::{
    party::{method_not_allowed, ConnectContext, Connection, Party, Reply, Request},
    room::Room,
    Config, ListOptions, Message, Method, Response, Server, MAX_VALUE_BYTES,
};
use serde::{Deserialize, Serialize};

/// Storage keys of the history: `msg/00000000000000000042`.
const PREFIX: &str = "msg/";
/// Messages sent on connect and answered by GET (storage keeps them all).
const HISTORY_LEN: usize = 100;

/// One stored message (the value under its `msg/<seq>` key).
#[derive(Serialize, Deserialize)]
struct ChatMessage {
    from: String,
    text: String,
}

/// What clients receive, as JSON with a `"type"` field first:
/// `{"type":"message","seq":3,"from":"ann","text":"hi"}`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ToClient<'a> {
    /// Sent on connect: the newest messages, oldest first.
    History {
        messages: Vec<ChatMessage>,
    },
    /// Broadcast to the whole room, sender included.
    Message {
        seq: u64,
        from: &'a str,
        text: &'a str,
    },
    /// To the sender only, once its message `seq` is on disk.
    Saved {
        seq: u64,
    },
    Error {
        error: &'a str,
    },
}

impl ToClient<'_> {
    fn json(&self) -> String {
        serde_json::to_string(self).expect("plain data always serialises")
    }
}

/// What the party keeps in memory per room (`room.set_state`): the next sequence number.
/// (Not set by `on_start`: a room with state stays in memory, and a GET alone should not
/// pin a room there.)
struct NextSeq(u64);

/// The chat party. One instance per core serves every chat room that core owns; all per-room
/// data lives in the `Room` it is handed, so the party itself is an empty struct.
struct Chat;

impl Party for Chat {
    fn on_connect(&self, room: &mut Room, conn: &Connection, _ctx: &ConnectContext<'_>) {
        let messages = history(room);
        conn.send_text(&ToClient::History { messages }.json());
    }

    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        // Chat is text; binary messages are ignored.
        let Message::Text(text) = msg else {
            return;
        };
        let stored = ChatMessage {
            from: sender.id().to_owned(),
            text: text.to_owned(),
        };
        let value = serde_json::to_vec(&stored).expect("strings always serialise");
        if value.len() > MAX_VALUE_BYTES {
            let error = "message too long";
            sender.send_text(&ToClient::Error { error }.json());
            return;
        }

        let seq = take_seq(room);

        // The message is written to storage first. `put` returns a `Durable` future that
        // resolves after the fsync (writes of one event-loop pass share one fsync). Handlers
        // are synchronous, so to wait for it we spawn a task on this core's monoio runtime;
        // the connection and room handles are `Rc`s and may go along.
        let durable = room.storage().put(&format!("{PREFIX}{seq:020}"), value);
        let (sender, handle) = (sender.clone(), room.handle());
        monoio::spawn(async move {
            match durable.await {
                Ok(()) => {
                    // Only now does anyone see it (an output gate, as a Durable Object has):
                    // a message a crash could still lose is never shown.
                    let out = ToClient::Message {
                        seq,
                        from: &stored.from,
                        text: &stored.text,
                    };
                    handle.with(|room| room.broadcast_text(&out.json(), &[]));
                    sender.send_text(&ToClient::Saved { seq }.json());
                }
                Err(e) => {
                    tracing::error!(seq, error = %e, "storing a chat message failed");
                    let error = "not stored (server storage failed); try again";
                    sender.send_text(&ToClient::Error { error }.json());
                }
            }
        });
    }

    /// When the last socket leaves, drop the counter: a room with no connections and no state
    /// is unloaded (storage keeps the history; `take_seq` recomputes the counter next time).
    fn on_close(&self, room: &mut Room, _conn: &Connection, _code: u16, _reason: &str) {
        if room.connections().next().is_none() {
            room.clear_state();
        }
    }

    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        match req.method {
            Method::Get => {
                let body = serde_json::to_vec(&history(room)).expect("serialises");
                Response::json(200, body).into()
            }
            _ => method_not_allowed("GET").into(),
        }
    }
}

/// The next sequence number for this room. Kept in memory with `room.set_state` while the
/// room is in use; when it is not there (the room was just loaded, maybe after a restart), the
/// newest stored key tells where to continue. Storage was replayed from disk when the core
/// started, and a `put` is visible to reads at once, so this is always up to date.
fn take_seq(room: &mut Room) -> u64 {
    if room.state_ref::<NextSeq>().is_none() {
        let newest = room
            .storage()
            .list(&ListOptions {
                prefix: Some(PREFIX),
                reverse: true,
                limit: Some(1),
                ..ListOptions::default()
            })
            .unwrap_or_default();
        let next = newest
            .first()
            .and_then(|(key, _)| key[PREFIX.len()..].parse::<u64>().ok())
            .map_or(0, |seq| seq + 1);
        room.set_state(NextSeq(next));
    }
    let next = room.state_mut::<NextSeq>().expect("set above");
    next.0 += 1;
    next.0 - 1
}

/// The newest `HISTORY_LEN` messages, oldest first. Storage reads are served from memory.
fn history(room: &Room) -> Vec<ChatMessage> {
    let opts = ListOptions {
        prefix: Some(PREFIX),
        reverse: true,
        limit: Some(HISTORY_LEN),
        ..ListOptions::default()
    };
    let mut newest_first = room.storage().list(&opts).unwrap_or_default();
    newest_first.reverse();
    newest_first
        .into_iter()
        .filter_map(|(_, value)| serde_json::from_slice(&value).ok())
        .collect()
}

fn main() -> std::io::Result<()> {
    // The server logs through `tracing`: show info and up on stderr (RUST_LOG overrides).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let server = Server::builder()
        .config(example_config("chat"))
        .party("chat", || Chat)
        .start()?;
    // Scripts wait for this line (stdout is line-buffered).
    println!("listening on http://{}", server.addr);
    println!(
        "  ws://{0}/parties/chat/<room>   GET http://{0}/parties/chat/<room>",
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
